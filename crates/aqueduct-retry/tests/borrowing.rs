//! Operations that borrow the caller's state: `FnMut` closures over `&mut` state, and `retry_mut` with async closures.

use std::collections::HashMap;
use std::time::Duration;

use aqueduct_retry::{Error, RetryPolicy, retry, retry_mut};

fn policy() -> RetryPolicy {
    RetryPolicy::builder().constant(Duration::from_millis(1)).max_attempts(5).build().unwrap()
}

struct Client {
    requests: Vec<String>,
    failures_left: u32,
}

impl Client {
    async fn get(&mut self, path: &str) -> Result<String, &'static str> {
        self.requests.push(path.to_owned());
        tokio::task::yield_now().await;
        if self.failures_left > 0 {
            self.failures_left -= 1;
            Err("connection reset")
        } else {
            Ok(format!("body of {path}"))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_fnmut_closure_updates_borrowed_state_before_each_attempt() {
    let mut attempts_by_key: HashMap<&str, u32> = HashMap::new();
    let result: Result<u32, Error<&str>> = retry(&policy(), || {
        let count = attempts_by_key.entry("fetch").or_default();
        *count += 1;
        let attempt = *count;
        async move { if attempt < 3 { Err("busy") } else { Ok(attempt) } }
    })
    .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(attempts_by_key["fetch"], 3);
}

#[tokio::test(start_paused = true)]
async fn retry_mut_lends_mutable_state_to_each_attempt() {
    let mut client = Client { requests: Vec::new(), failures_left: 2 };
    let body: Result<String, Error<&str>> =
        retry_mut(&policy(), async || client.get("/items").await).run().await;
    assert_eq!(body.unwrap(), "body of /items");
    assert_eq!(client.requests, ["/items", "/items", "/items"]);
}

#[tokio::test(start_paused = true)]
async fn retry_mut_honours_the_policy_and_hooks() {
    let mut client = Client { requests: Vec::new(), failures_left: 10 };
    let mut retries = 0;
    let result: Result<String, Error<&str>> =
        retry_mut(&policy(), async || client.get("/down").await)
            .notify(|_| retries += 1)
            .run()
            .await;
    assert!(matches!(result, Err(Error::Exhausted { attempts: 5, .. })));
    assert_eq!(retries, 4);
    assert_eq!(client.requests.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn retry_mut_applies_the_attempt_timeout() {
    let policy = RetryPolicy::builder()
        .constant(Duration::ZERO)
        .max_attempts(2)
        .attempt_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut attempts = 0;
    let result: Result<(), Error<&str>> = retry_mut(&policy, async || {
        attempts += 1;
        std::future::pending::<Result<(), &str>>().await
    })
    .run()
    .await;
    match result {
        Err(Error::Exhausted { attempts: 2, last_error: Some(last), .. }) => {
            assert!(last.is_elapsed())
        }
        other => panic!("expected exhaustion after two timeouts, got {other:?}"),
    }
    assert_eq!(attempts, 2);
}
