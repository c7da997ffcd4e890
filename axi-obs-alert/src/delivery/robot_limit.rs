//! The robots' message limits, respected by batching: DingTalk and WeCom accept at most 20
//! messages per minute per robot. While a robot's window is full, its notifications wait
//! together; when a slot frees, they go out as one message (the markdown sections joined,
//! the mentions merged), and each waiting delivery gets that message's outcome.
//!
//! A batch holds as many waiting notifications as fit whole within the robot's size limit;
//! the others are told to try again ([`DeliveryError::Batched`], retryable) and go in the
//! next slot's message, so no notification is cut away and still logged as sent. Only a
//! single notification over the limit is cut ([`fit_robot_body`](super::fit_robot_body)).

use axi_obs_core::https::HttpClient;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::integrations::{Delivered, DeliveryError, fit_robot_body, post_robot, robot_body_fits};

/// The robots' documented limit: messages per [`DEFAULT_ROBOT_WINDOW`].
pub const DEFAULT_ROBOT_MESSAGES: usize = 20;
/// The window of [`DEFAULT_ROBOT_MESSAGES`].
pub const DEFAULT_ROBOT_WINDOW: Duration = Duration::from_secs(60);

/// Between the sections of a batched message.
const SEPARATOR: &str = "\n\n---\n\n";

/// The outcome of a batched message, shared by every notification in it.
pub(crate) type Outcome = Result<(), (bool, String)>;

#[derive(Default)]
struct Window {
    /// When the messages of the current window were sent.
    sent: VecDeque<Instant>,
    /// Bodies waiting for a slot, with where to report.
    pending: Vec<(Value, oneshot::Sender<Outcome>)>,
    /// Whether a delivery is already waiting for the next slot on everyone's behalf.
    leader: bool,
}

impl Window {
    /// Forgets the messages sent a whole window (`per`) or more before `now`.
    fn forget_before(&mut self, now: Instant, per: Duration) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= per)
        {
            self.sent.pop_front();
        }
    }
}

/// What a delivery must do with its body.
pub(crate) enum Turn {
    /// A slot is free: send this body now.
    Send(Value),
    /// Wait for the batched message: its outcome arrives here.
    Wait(oneshot::Receiver<Outcome>),
    /// Wait until `at`, then take every pending body ([`RobotLimits::take_batch`]), send them
    /// as one message and report to the others.
    Lead(Instant, oneshot::Receiver<Outcome>),
}

/// Per-robot sliding windows, shared by every clone of a
/// [`Notifier`](super::Notifier).
#[derive(Clone)]
pub(crate) struct RobotLimits {
    max: usize,
    per: Duration,
    windows: Arc<Mutex<HashMap<String, Window>>>,
}

impl std::fmt::Debug for RobotLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotLimits")
            .field("max", &self.max)
            .field("per", &self.per)
            .finish_non_exhaustive()
    }
}

impl RobotLimits {
    pub(crate) fn new(max: usize, per: Duration) -> RobotLimits {
        RobotLimits {
            max: max.max(1),
            per,
            windows: Arc::default(),
        }
    }

    /// Asks to send `body` to the robot `key` now.
    pub(crate) fn turn(&self, key: &str, body: Value) -> Turn {
        let now = Instant::now();
        let mut all = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let w = all.entry(key.to_string()).or_default();
        w.forget_before(now, self.per);
        if w.sent.len() < self.max && w.pending.is_empty() {
            w.sent.push_back(now);
            return Turn::Send(body);
        }
        let (tx, rx) = oneshot::channel();
        w.pending.push((body, tx));
        if w.leader {
            return Turn::Wait(rx);
        }
        w.leader = true;
        let at = match w.sent.front() {
            Some(t) if w.sent.len() >= self.max => *t + self.per,
            _ => now,
        };
        Turn::Lead(at, rx)
    }

    /// For the leader, once its time came: every pending body and its reporter, the slot
    /// taken. The next full window elects a new leader.
    pub(crate) fn take_batch(&self, key: &str) -> Vec<(Value, oneshot::Sender<Outcome>)> {
        let now = Instant::now();
        let mut all = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let w = all.entry(key.to_string()).or_default();
        w.forget_before(now, self.per);
        w.sent.push_back(now);
        w.leader = false;
        std::mem::take(&mut w.pending)
    }
}

/// Sends `body` to the robot `key` within its limit: now when a slot is free; otherwise
/// batched with the others waiting for that robot. `url` gives the request URL at the time
/// of sending (DingTalk's signature carries a timestamp).
pub(crate) async fn send_limited(
    limits: &RobotLimits,
    client: &HttpClient,
    key: &str,
    body: Value,
    url: impl Fn() -> String,
) -> Result<Delivered, DeliveryError> {
    let rx = match limits.turn(key, body) {
        Turn::Send(body) => return post_robot(client, &url(), &body).await,
        Turn::Wait(rx) => rx,
        Turn::Lead(at, rx) => {
            // Dropped before sending (the delivery was cancelled): the waiters are released
            // with an error they retry, and the next one to come leads.
            let mut guard = LeadGuard {
                limits,
                key,
                armed: true,
            };
            tokio::time::sleep_until(at).await;
            let (bodies, reporters): (Vec<Value>, Vec<_>) =
                limits.take_batch(key).into_iter().unzip();
            guard.armed = false;
            // The leader's own body is the first: a batch always holds it.
            let fit = fitting_prefix(&bodies);
            let result = post_robot(client, &url(), &merge(&bodies[..fit])).await;
            let outcome: Outcome = match &result {
                Ok(_) => Ok(()),
                Err(e) => Err((e.is_retryable(), e.to_string())),
            };
            let mut reporters = reporters.into_iter();
            for r in reporters.by_ref().take(fit) {
                let _ = r.send(outcome.clone());
            }
            for r in reporters {
                let _ = r.send(Err((
                    true,
                    "no room left in the batched message (the robot's size limit): sent in the next one"
                        .into(),
                )));
            }
            rx
        }
    };
    match rx.await {
        Ok(Ok(())) => Ok(Delivered::Sent),
        Ok(Err((retryable, message))) => Err(DeliveryError::Batched { retryable, message }),
        Err(_) => Err(DeliveryError::Batched {
            retryable: true,
            message: "the batch was dropped before it was sent".into(),
        }),
    }
}

struct LeadGuard<'a> {
    limits: &'a RobotLimits,
    key: &'a str,
    armed: bool,
}

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut all = self
                .limits
                .windows
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(w) = all.get_mut(self.key) {
                w.leader = false;
                w.pending.clear();
            }
        }
    }
}

/// One robot message made of several (`msgtype: markdown`): DingTalk's texts joined, its
/// title the first one's with the count of the others, its mentions merged; WeCom's contents
/// joined. The result is fitted to the robot's limit
/// ([`fit_robot_body`](super::fit_robot_body)): a batch made during a storm is the message
/// most likely to exceed it.
pub(crate) fn merge(bodies: &[Value]) -> Value {
    let mut out = join(bodies);
    fit_robot_body(&mut out);
    out
}

/// How many of `bodies`, from the first, make one message within the robot's limit without
/// a cut: at least one when there is one (a single body over the limit is cut when sent).
fn fitting_prefix(bodies: &[Value]) -> usize {
    (2..=bodies.len())
        .take_while(|&k| robot_body_fits(&join(&bodies[..k])))
        .last()
        .unwrap_or(1)
        .min(bodies.len())
}

/// The bodies as one message, not yet fitted to the robot's limit.
fn join(bodies: &[Value]) -> Value {
    let Some(first) = bodies.first() else {
        return Value::Null;
    };
    if bodies.len() == 1 {
        return first.clone();
    }
    let mut out = first.clone();
    let texts = |field: &str| -> String {
        bodies
            .iter()
            .filter_map(|b| b["markdown"][field].as_str())
            .collect::<Vec<_>>()
            .join(SEPARATOR)
    };
    if first["markdown"].get("text").is_some() {
        let title = first["markdown"]["title"].as_str().unwrap_or_default();
        out["markdown"]["title"] = Value::String(format!("{title} (+{} more)", bodies.len() - 1));
        out["markdown"]["text"] = Value::String(texts("text"));
        let mut mobiles: Vec<Value> = Vec::new();
        for b in bodies {
            for m in b["at"]["atMobiles"].as_array().into_iter().flatten() {
                if !mobiles.contains(m) {
                    mobiles.push(m.clone());
                }
            }
        }
        out["at"]["atMobiles"] = Value::Array(mobiles);
        out["at"]["isAtAll"] = Value::Bool(
            bodies
                .iter()
                .any(|b| b["at"]["isAtAll"].as_bool() == Some(true)),
        );
    } else {
        out["markdown"]["content"] = Value::String(texts("content"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::integrations::WECOM_MARKDOWN_MAX_BYTES;
    use super::*;
    use serde_json::json;

    #[test]
    fn merging_joins_sections_and_mentions() {
        let ding = |t: &str, m: &str, all: bool| {
            json!({"msgtype": "markdown", "markdown": {"title": t, "text": format!("## {t}")},
                   "at": {"atMobiles": [m], "isAtAll": all}})
        };
        let m = merge(&[
            ding("A", "1", false),
            ding("B", "2", false),
            ding("C", "1", true),
        ]);
        assert_eq!(m["markdown"]["title"], "A (+2 more)");
        assert_eq!(m["markdown"]["text"], "## A\n\n---\n\n## B\n\n---\n\n## C");
        assert_eq!(m["at"], json!({"atMobiles": ["1", "2"], "isAtAll": true}));
        let wecom = |c: &str| json!({"msgtype": "markdown", "markdown": {"content": c}});
        let long = "é".repeat(WECOM_MARKDOWN_MAX_BYTES);
        let m = merge(&[wecom("x"), wecom(&long)]);
        let content = m["markdown"]["content"].as_str().unwrap_or_default();
        assert!(content.starts_with("x\n\n---\n\né"));
        assert!(content.len() <= WECOM_MARKDOWN_MAX_BYTES);
        assert_eq!(merge(&[wecom("only")]), wecom("only"));
    }

    #[tokio::test]
    async fn a_full_window_elects_one_leader_and_the_rest_wait() {
        let window = Duration::from_millis(200);
        let l = RobotLimits::new(2, window);
        let b = json!({});
        assert!(matches!(l.turn("r", b.clone()), Turn::Send(_)));
        assert!(matches!(l.turn("r", b.clone()), Turn::Send(_)));
        // Another robot has its own window.
        assert!(matches!(l.turn("other", b.clone()), Turn::Send(_)));
        let at = match l.turn("r", b.clone()) {
            Turn::Lead(at, _) => at,
            _ => panic!("the third message leads"),
        };
        // The leader waits for the oldest message of the window to leave it.
        let now = Instant::now();
        assert!(at > now && at <= now + window, "{:?}", at - now);
        assert!(matches!(l.turn("r", b.clone()), Turn::Wait(_)));
        tokio::time::sleep_until(at).await;
        assert_eq!(l.take_batch("r").len(), 2);
        // The batch took one slot of the new window; one is left.
        assert!(matches!(l.turn("r", b.clone()), Turn::Send(_)));
        assert!(matches!(l.turn("r", b), Turn::Lead(..)));
    }
}
