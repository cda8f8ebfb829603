//! `manual_sleep`: the talk's hand-driven sleep. Polled with a waker that
//! does nothing, it asks once and then trusts its driver.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use byhand::{manual_sleep, take_request};

#[test]
fn the_first_poll_asks_the_driver_to_wait_and_the_second_finishes() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut sleep = pin!(manual_sleep(3));
    assert_eq!(sleep.seconds(), 3);
    assert!(take_request().is_none());

    assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
    let request = take_request().expect("a request");
    assert_eq!(request.seconds, 3);
    assert_eq!(
        request.to_string(),
        "Please do not continue until 3 seconds have elapsed."
    );
    // Taken once: the mailbox is empty again.
    assert!(take_request().is_none());

    assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Ready(()));
    assert!(take_request().is_none());
}

#[test]
fn a_request_travels_up_through_nested_awaits() {
    async fn square(x: u64) -> u64 {
        manual_sleep(3).await;
        x * x
    }
    async fn cube(x: u64) -> u64 {
        manual_sleep(2).await;
        let y = square(x).await;
        x * y
    }
    let mut cx = Context::from_waker(Waker::noop());
    let mut cube = pin!(cube(3));
    let mut requests = Vec::new();
    let result = loop {
        match cube.as_mut().poll(&mut cx) {
            Poll::Pending => requests.push(take_request().expect("a request").to_string()),
            Poll::Ready(value) => break value,
        }
    };
    assert_eq!(result, 27);
    assert_eq!(
        requests,
        [
            "Please do not continue until 2 seconds have elapsed.",
            "Please do not continue until 3 seconds have elapsed.",
        ]
    );
}
