//! `coop pub` and `coop sub`: command-line clients for the hub.
//!
//! `pub` posts one message (or one per stdin line) and fails loudly on
//! anything but `200`. `sub` always reads NDJSON under the hood, whatever it
//! prints, so that it knows each message's id: when the stream ends (hub
//! restarted, shutdown notice, lag, network) it reconnects with backoff and
//! resumes with `?since=<last id>`, so it loses nothing the hub's history
//! still holds, and says so on stderr when the hub reports a gap.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use futures::StreamExt;

use hub::transport::ndjson::{self, Control};

use super::ConfigError;

/// Flags of `coop pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// The message. Without it, every line of stdin is published as one
    /// message.
    pub message: Option<String>,

    /// Topic to publish to.
    #[arg(long, short, default_value = "default")]
    pub topic: String,

    /// The hub's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "COOP_HUB_URL")]
    pub url: String,

    /// Bearer token (a JWT) for a hub started with `--auth-secret`.
    #[arg(long, env = "COOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Print each message's id as it is acknowledged.
    #[arg(long)]
    pub print_id: bool,
}

/// What `coop sub` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubFormat {
    /// The message text, one per line.
    Raw,
    /// Server-Sent Events as the hub sends them (id, event, topic, data).
    Sse,
    /// One JSON object per line: `{"id","topic","time","message"}`.
    Ndjson,
    /// Same as ndjson.
    Json,
}

/// Flags of `coop sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Topics to follow: a name, several separated by commas, or patterns
    /// (`farm.*` one segment, `farm.**` any depth; at most 128 bytes and
    /// 16 wildcards each, or the hub answers `400`).
    #[arg(long, short, default_value = "default")]
    pub topic: String,

    /// Start after this message id (or `all` for the whole history);
    /// without it, only new messages.
    #[arg(long)]
    pub since: Option<String>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = SubFormat::Raw)]
    pub format: SubFormat,

    /// Exit after this many messages.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,

    /// The hub's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "COOP_HUB_URL")]
    pub url: String,

    /// Bearer token (a JWT) for a hub started with `--auth-secret`.
    #[arg(long, env = "COOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Longest wait between reconnection attempts (backoff doubles from
    /// 100ms up to this).
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub max_backoff: Duration,
}

fn topic_path(base: &str, topic: &str) -> String {
    let base = base.trim_end_matches('/');
    if topic == "default" {
        format!("{base}/")
    } else {
        format!("{base}/topics/{topic}")
    }
}

pub async fn run_pub(args: PubArgs) -> anyhow::Result<ExitCode> {
    if args.topic.contains([',', '*']) {
        return Err(ConfigError(format!(
            "--topic {:?}: publish to one topic (no ',' or '*')",
            args.topic
        ))
        .into());
    }
    let client = reqwest::Client::new();
    let url = topic_path(&args.url, &args.topic);
    let url = &url;
    let send = |msg: String| {
        let mut req = client
            .post(url)
            .header("accept", "application/json")
            .body(msg);
        if let Some(t) = &args.token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                bail!("{url} answered {status}: {}", body.trim());
            }
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            anyhow::Ok(v["id"].as_u64())
        }
    };
    let mut out = std::io::stdout().lock();
    let mut report = |id: Option<u64>| -> anyhow::Result<()> {
        if args.print_id {
            writeln!(out, "{}", id.map_or("?".into(), |i| i.to_string()))?;
        }
        Ok(())
    };
    match args.message.clone() {
        Some(msg) => report(send(msg).await?)?,
        None => {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let line = line.context("cannot read stdin")?;
                report(send(line).await?)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How one connection of `coop sub` ended.
enum Ended {
    /// The wanted count was reached.
    Done,
    /// Reconnect (after the given reason).
    Reconnect(String),
}

pub async fn run_sub(args: SubArgs) -> anyhow::Result<ExitCode> {
    let mut since = args.since.clone();
    if let Some(s) = &since {
        // The hub's own rule (ids up to i64::MAX, or `all`), so a bad
        // value is a usage error here rather than a 400 from the hub.
        if let Err(reason) = hub::hub::Since::parse(s) {
            return Err(ConfigError(format!("--since: {reason}")).into());
        }
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let mut received = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut url = format!("{}?format=ndjson", topic_path(&args.url, &args.topic));
        if let Some(s) = &since {
            url.push_str(&format!("&since={s}"));
        }
        match follow(&client, &url, &args, &mut since, &mut received).await {
            Ok(Ended::Done) => return Ok(ExitCode::SUCCESS),
            Ok(Ended::Reconnect(why)) => {
                tracing::info!("{why}; reconnecting");
                backoff = Duration::from_millis(100);
            }
            Err(Fatal(err)) => return Err(err),
            Err(Retry(err)) => {
                tracing::warn!(
                    "{err:#}; retrying in {}",
                    humantime::format_duration(backoff)
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(args.max_backoff);
    }
}

/// Errors of one connection: some are worth retrying, some are not (a
/// `400` or `403` will not go away by itself).
enum FollowError {
    Fatal(anyhow::Error),
    Retry(anyhow::Error),
}
use FollowError::{Fatal, Retry};

async fn follow(
    client: &reqwest::Client,
    url: &str,
    args: &SubArgs,
    since: &mut Option<String>,
    received: &mut u64,
) -> Result<Ended, FollowError> {
    let mut req = client.get(url);
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))
        .map_err(Retry)?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let err = anyhow::anyhow!("{url} answered {status}: {}", body.trim());
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            Retry(err)
        } else {
            Fatal(err)
        });
    }
    let mut body = resp.bytes_stream();
    let mut decoder = ndjson::Decoder::default();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("stream broke").map_err(Retry)?;
        for record in decoder.push(&chunk) {
            let record = record
                .context("the hub sent a line that is not one of its records")
                .map_err(Fatal)?;
            let msg = match record {
                ndjson::Record::Message(msg) => msg,
                ndjson::Record::Control(control) => {
                    match control {
                        Control::Gap {
                            topic: None,
                            topics,
                            after,
                            dropped_through,
                        } => eprintln!(
                            "warning: {} more topics lost messages after id {after} up to id {dropped_through} (no longer held)",
                            topics.unwrap_or(0)
                        ),
                        Control::Gap {
                            topic: Some(topic),
                            after,
                            dropped_through,
                            ..
                        } => eprintln!(
                            "warning: topic \"{topic}\" lost messages after id {after} up to id {dropped_through} (no longer held)"
                        ),
                        Control::Lagged { .. } => {
                            return Ok(Ended::Reconnect("fell behind the hub".into()))
                        }
                        Control::Unavailable { reason, .. } => {
                            return Ok(Ended::Reconnect(format!(
                                "the hub's broker was interrupted ({reason})"
                            )))
                        }
                        Control::Shutdown => {
                            return Ok(Ended::Reconnect("the hub is shutting down".into()))
                        }
                        Control::Unknown => tracing::debug!("unknown control record"),
                    }
                    continue;
                }
            };
            *since = Some(msg.id.to_string());
            print_record(&mut out, args.format, &msg).map_err(|e| Fatal(e.into()))?;
            *received += 1;
            if args.count.is_some_and(|n| *received >= n) {
                out.flush().map_err(|e| Fatal(e.into()))?;
                return Ok(Ended::Done);
            }
        }
        out.flush().map_err(|e| Fatal(e.into()))?;
    }
    Ok(Ended::Reconnect("the stream ended".into()))
}

fn print_record(
    out: &mut impl Write,
    format: SubFormat,
    msg: &ndjson::MessageRecord,
) -> std::io::Result<()> {
    match format {
        SubFormat::Raw => writeln!(out, "{}", msg.message),
        SubFormat::Ndjson | SubFormat::Json => {
            serde_json::to_writer(&mut *out, msg)?;
            writeln!(out)
        }
        SubFormat::Sse => {
            writeln!(out, "id: {}", msg.id)?;
            writeln!(out, "event: message")?;
            writeln!(out, "topic: {}", msg.topic)?;
            for line in msg.message.split('\n') {
                writeln!(out, "data: {line}")?;
            }
            writeln!(out)
        }
    }
}
