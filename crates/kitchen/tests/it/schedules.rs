//! The talk's dinner, exactly: totals and whole timelines for sequential,
//! one cook and two cooks, all on the paused clock (deterministic, instant).

use std::time::Duration;

use kitchen::{cook, cook_virtual, mmss, Menu, Mode, Options, Pace, Timeline};

/// One line per step: `start-end recipe: step [who]`, in timeline order.
fn lines(t: &Timeline) -> Vec<String> {
    t.steps
        .iter()
        .map(|s| {
            format!(
                "{}-{} {}: {} [{}]",
                mmss(s.start_ms),
                mmss(s.end_ms),
                s.recipe,
                s.step,
                s.who
            )
        })
        .collect()
}

fn ready(t: &Timeline) -> Vec<(String, String)> {
    t.recipes
        .iter()
        .map(|r| (r.name.clone(), mmss(r.ready_ms)))
        .collect()
}

const MIN: u64 = 60_000;

#[test]
fn sequential_takes_56_minutes_exactly() {
    let t = cook_virtual(&Menu::builtin(), Mode::Sequential, 1);
    assert_eq!(t.total_ms, 56 * MIN);
    assert_eq!(
        lines(&t),
        [
            "00:00-00:30 salmon: preheat the oven to 350 °F [oven]",
            "00:30-01:30 salmon: arrange the filets on a baking sheet [cook 1]",
            "01:30-02:00 salmon: slather each filet with orange-ginger dressing [cook 1]",
            "02:00-20:00 salmon: bake [oven]",
            "20:00-20:30 rice: water and butter into the pot [cook 1]",
            "20:30-22:00 rice: bring to a boil [burner 1]",
            "22:00-22:30 rice: stir in spices and rice, cover, set to low [cook 1]",
            "22:30-44:30 rice: simmer [burner 1]",
            "44:30-45:00 rice: fluff [cook 1]",
            "45:00-50:00 rice: let stand [burner 1]",
            "50:00-51:00 beans: poke holes in the bag, put it on a plate [cook 1]",
            "51:00-56:00 beans: microwave [microwave]",
        ]
    );
    assert_eq!(
        ready(&t),
        [
            ("salmon".into(), "20:00".into()),
            ("rice".into(), "50:00".into()),
            ("beans".into(), "56:00".into())
        ]
    );
    // Nobody ever queues when one recipe cooks at a time.
    assert!(t.steps.iter().all(|s| s.queued_ms() == 0));
    assert_eq!(t.cook_busy_ms(1), 4 * MIN);
}

#[test]
fn one_cook_interleaved_takes_30_and_a_half_minutes() {
    let t = cook_virtual(&Menu::builtin(), Mode::Interleaved, 1);
    assert_eq!(t.total_ms, 30 * MIN + 30_000);
    assert_eq!(
        lines(&t),
        [
            "00:00-00:30 salmon: preheat the oven to 350 °F [oven]",
            "00:00-00:30 rice: water and butter into the pot [cook 1]",
            "00:30-02:00 rice: bring to a boil [burner 1]",
            "00:30-01:30 beans: poke holes in the bag, put it on a plate [cook 1]",
            "01:30-02:30 salmon: arrange the filets on a baking sheet [cook 1]",
            "01:30-06:30 beans: microwave [microwave]",
            "02:30-03:00 rice: stir in spices and rice, cover, set to low [cook 1]",
            "03:00-03:30 salmon: slather each filet with orange-ginger dressing [cook 1]",
            "03:00-25:00 rice: simmer [burner 1]",
            "03:30-21:30 salmon: bake [oven]",
            "25:00-25:30 rice: fluff [cook 1]",
            "25:30-30:30 rice: let stand [burner 1]",
        ]
    );
    assert_eq!(
        ready(&t),
        [
            ("salmon".into(), "21:30".into()),
            ("rice".into(), "30:30".into()),
            ("beans".into(), "06:30".into())
        ]
    );
    // Why 30:30: the rice (30:00 on its own, the critical path) asked for
    // the cook at 02:00 to stir, while the cook was arranging the salmon
    // (the beans had asked first, at 00:00, so the salmon came after them).
    let (index, last) = t.last_recipe().unwrap();
    assert_eq!(last.name, "rice");
    let waits: Vec<(String, u64, u64)> = t
        .queued_steps(index)
        .map(|s| (s.step.clone(), s.asked_ms, s.start_ms))
        .collect();
    assert_eq!(
        waits,
        [(
            "stir in spices and rice, cover, set to low".into(),
            2 * MIN,
            2 * MIN + 30_000
        )]
    );
    assert_eq!(
        t.cook_doing(1, 2 * MIN).map(|s| s.step.as_str()),
        Some("arrange the filets on a baking sheet")
    );
    assert_eq!(t.cook_busy_ms(1), 4 * MIN);
}

#[test]
fn a_second_cook_saves_only_thirty_seconds() {
    let t = cook_virtual(&Menu::builtin(), Mode::Interleaved, 2);
    assert_eq!(t.total_ms, 30 * MIN);
    assert_eq!(
        lines(&t),
        [
            "00:00-00:30 salmon: preheat the oven to 350 °F [oven]",
            "00:00-00:30 rice: water and butter into the pot [cook 1]",
            "00:00-01:00 beans: poke holes in the bag, put it on a plate [cook 2]",
            "00:30-01:30 salmon: arrange the filets on a baking sheet [cook 1]",
            "00:30-02:00 rice: bring to a boil [burner 1]",
            "01:00-06:00 beans: microwave [microwave]",
            "01:30-02:00 salmon: slather each filet with orange-ginger dressing [cook 1]",
            "02:00-20:00 salmon: bake [oven]",
            // Both cooks are free at 02:00; the rice asks just before the
            // salmon's slathering ends, so cook 2 takes it.
            "02:00-02:30 rice: stir in spices and rice, cover, set to low [cook 2]",
            "02:30-24:30 rice: simmer [burner 1]",
            "24:30-25:00 rice: fluff [cook 1]",
            "25:00-30:00 rice: let stand [burner 1]",
        ]
    );
    // The floor: the rice on its own. Nobody waited on the critical path.
    assert_eq!(
        t.total_ms,
        Menu::builtin().longest_recipe().as_millis() as u64
    );
    assert_eq!(t.cook_busy_ms(1) + t.cook_busy_ms(2), 4 * MIN);
    // More cooks than that change nothing at all.
    assert_eq!(
        cook_virtual(&Menu::builtin(), Mode::Interleaved, 5).total_ms,
        30 * MIN
    );
}

#[test]
fn the_same_menu_gives_the_same_timeline_every_time() {
    let menu = Menu::builtin();
    let first = cook_virtual(&menu, Mode::Interleaved, 1);
    for _ in 0..20 {
        assert_eq!(cook_virtual(&menu, Mode::Interleaved, 1), first);
    }
}

#[tokio::test(start_paused = true)]
async fn virtual_half_hour_passes_on_the_paused_clock() {
    let before = tokio::time::Instant::now();
    let wall = std::time::Instant::now();
    let t = cook(&Menu::builtin(), Options::default(), None).await;
    // tokio's clock moved exactly as far as the dinner took ...
    assert_eq!(before.elapsed(), Duration::from_millis(t.total_ms));
    // ... and the wall clock hardly at all (generous: a loaded CI box).
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "{:?}",
        wall.elapsed()
    );
}

#[test]
fn real_time_pace_scales_sleeps_and_reports_virtual_minutes() {
    // The --real-time code path, but on a paused clock so the test is
    // exact: at 60x, the dinner's 30:30 is 30.5 s of (paused) clock time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let opts = Options {
        pace: Pace::RealTime { speedup: 60.0 },
        ..Options::default()
    };
    let (t, clock) = rt.block_on(async {
        let before = tokio::time::Instant::now();
        let t = cook(&Menu::builtin(), opts, None).await;
        (t, before.elapsed())
    });
    assert_eq!(clock, Duration::from_millis(30_500));
    assert_eq!(t.total_ms, 30 * MIN + 30_000);
    assert_eq!(t.speedup, Some(60.0));
    let virtual_time = cook_virtual(&Menu::builtin(), Mode::Interleaved, 1);
    assert_eq!(lines(&t), lines(&virtual_time));
}

#[tokio::test(start_paused = true)]
async fn observer_sees_every_start_and_every_ready_in_time_order() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let observer: kitchen::Observer = Arc::new(move |e: kitchen::Event<'_>| {
        let entry = match e {
            kitchen::Event::Started(s) => (s.start_ms, format!("{} {}", s.recipe, s.step)),
            kitchen::Event::Ready { recipe, at_ms } => (at_ms, format!("{recipe} ready")),
        };
        sink.lock().unwrap().push(entry);
    });
    let t = cook(&Menu::builtin(), Options::default(), Some(observer)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), t.steps.len() + t.recipes.len());
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert_eq!(
        seen.last().unwrap(),
        &(t.total_ms, "rice ready".to_string())
    );
}

#[test]
fn recipes_wait_for_a_busy_oven_rack() {
    let menu = Menu::from_toml(
        r#"
        [[recipe]]
        name = "bread"
        [[recipe.step]]
        name = "bake"
        kind = "wait"
        appliance = "oven"
        minutes = 40
        [[recipe]]
        name = "cake"
        [[recipe.step]]
        name = "bake"
        kind = "wait"
        appliance = "oven"
        minutes = 30
        "#,
    )
    .unwrap();
    let t = cook_virtual(&menu, Mode::Interleaved, 2);
    // One rack: the cake waits for the bread however many cooks there are.
    assert_eq!(t.total_ms, 70 * MIN);
    let cake = t.steps.iter().find(|s| s.recipe == "cake").unwrap();
    assert_eq!((cake.asked_ms, cake.start_ms), (0, 40 * MIN));

    let mut two_racks = menu.clone();
    two_racks.kitchen.oven_racks = 2;
    let t = cook_virtual(&two_racks, Mode::Interleaved, 1);
    assert_eq!(t.total_ms, 40 * MIN);
    let whos: Vec<&str> = t.steps.iter().map(|s| s.who.as_str()).collect();
    assert_eq!(whos, ["oven 1", "oven 2"]);
}

#[tokio::test(start_paused = true)]
async fn crossed_appliances_cannot_deadlock() {
    // Each recipe wants the other's appliance next, with one of each. If a
    // recipe kept its appliance while waiting for the next one, both would
    // wait forever; the kitchen lets go first, so both finish.
    let menu = Menu::from_toml(
        r#"
        [kitchen]
        oven_racks = 1
        burners = 1
        [[recipe]]
        name = "a"
        [[recipe.step]]
        name = "oven first"
        kind = "wait"
        appliance = "oven"
        minutes = 1
        [[recipe.step]]
        name = "then stove"
        kind = "wait"
        appliance = "burner"
        minutes = 1
        [[recipe.step]]
        name = "oven again"
        kind = "wait"
        appliance = "oven"
        minutes = 1
        [[recipe]]
        name = "b"
        [[recipe.step]]
        name = "stove first"
        kind = "wait"
        appliance = "burner"
        minutes = 1
        [[recipe.step]]
        name = "then oven"
        kind = "wait"
        appliance = "oven"
        minutes = 1
        [[recipe.step]]
        name = "stove again"
        kind = "wait"
        appliance = "burner"
        minutes = 1
        "#,
    )
    .unwrap();
    let t = tokio::time::timeout(
        Duration::from_secs(24 * 3600),
        cook(&menu, Options::default(), None),
    )
    .await
    .expect("the kitchen deadlocked");
    assert_eq!(t.total_ms, 3 * MIN);
}
