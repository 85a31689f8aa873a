//! The ambient deadline on paused time: scoping, nesting, remaining time and panic safety.

use std::time::Duration;

use aqueduct_core::{Deadline, current_deadline, remaining, with_deadline};
use tokio::time::{Instant, advance, sleep};

#[tokio::test(start_paused = true)]
async fn remaining_counts_down_on_paused_time() {
    let at = Instant::now() + Duration::from_secs(3);
    with_deadline(at, async {
        assert_eq!(remaining(), Some(Duration::from_secs(3)));
        sleep(Duration::from_secs(1)).await;
        assert_eq!(remaining(), Some(Duration::from_secs(2)));
        advance(Duration::from_secs(5)).await;
        assert_eq!(remaining(), Some(Duration::ZERO));
    })
    .await;
    assert_eq!(current_deadline(), None, "the deadline ends with its scope");
}

#[tokio::test(start_paused = true)]
async fn nesting_takes_the_earlier_deadline() {
    let now = Instant::now();
    let early = now + Duration::from_secs(1);
    let late = now + Duration::from_secs(10);

    let inner_later = with_deadline(early, with_deadline(late, async { current_deadline() })).await;
    assert_eq!(inner_later, Some(early));

    let inner_earlier =
        with_deadline(late, with_deadline(early, async { current_deadline() })).await;
    assert_eq!(inner_earlier, Some(early));

    // A future built outside any scope still obeys the scope it is polled in.
    let built_outside = with_deadline(late, async { current_deadline() });
    assert_eq!(with_deadline(early, built_outside).await, Some(early));
}

#[tokio::test(start_paused = true)]
async fn the_outer_deadline_is_restored_after_an_inner_scope() {
    let now = Instant::now();
    let outer = now + Duration::from_secs(5);
    let inner = now + Duration::from_secs(1);
    let seen = with_deadline(outer, async {
        let inside = with_deadline(inner, async {
            sleep(Duration::from_millis(10)).await;
            current_deadline()
        })
        .await;
        (inside, current_deadline())
    })
    .await;
    assert_eq!(seen, (Some(inner), Some(outer)));
}

#[tokio::test(start_paused = true)]
async fn clamp_reports_which_deadline_won() {
    let now = Instant::now();
    let own = now + Duration::from_secs(2);
    assert_eq!(Deadline::clamp(Some(own)), Some(Deadline::own(own)));
    let clamped =
        with_deadline(now + Duration::from_secs(1), async { Deadline::clamp(Some(own)) }).await;
    let clamped = clamped.expect("a deadline is in force");
    assert!(clamped.is_ambient());
    assert_eq!(clamped.at(), now + Duration::from_secs(1));
    let later_ambient =
        with_deadline(now + Duration::from_secs(9), async { Deadline::clamp(Some(own)) }).await;
    assert_eq!(later_ambient, Some(Deadline::own(own)));
    let only_ambient = with_deadline(own, async { Deadline::clamp(None) }).await;
    assert_eq!(only_ambient.map(|deadline| deadline.is_ambient()), Some(true));
}

#[tokio::test(start_paused = true)]
async fn concurrent_tasks_do_not_see_each_others_deadline() {
    let now = Instant::now();
    let first = tokio::spawn(with_deadline(now + Duration::from_secs(1), async {
        sleep(Duration::from_millis(5)).await;
        current_deadline()
    }));
    let second = tokio::spawn(async {
        sleep(Duration::from_millis(1)).await;
        let seen_early = current_deadline();
        sleep(Duration::from_millis(10)).await;
        (seen_early, current_deadline())
    });
    assert_eq!(first.await.expect("no panic"), Some(now + Duration::from_secs(1)));
    assert_eq!(second.await.expect("no panic"), (None, None));
}

#[test]
fn a_panicking_poll_restores_the_enclosing_deadline() {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
    let runtime = runtime.expect("a runtime builds");
    runtime.block_on(async {
        let at = Instant::now() + Duration::from_secs(1);
        let panicking = with_deadline(at, async { panic!("inside the scope") });
        let caught = futures_catch_unwind(panicking).await;
        assert!(caught.is_err());
        assert_eq!(current_deadline(), None);

        // Inside another scope, the enclosing deadline itself comes back, not merely "none".
        let outer = Instant::now() + Duration::from_secs(5);
        let seen_after_the_panic = with_deadline(outer, async {
            let inner = Instant::now() + Duration::from_secs(1);
            let caught =
                futures_catch_unwind(with_deadline(inner, async { panic!("inner scope") })).await;
            assert!(caught.is_err());
            current_deadline()
        })
        .await;
        assert_eq!(seen_after_the_panic, Some(outer));
        assert_eq!(current_deadline(), None);
    });
}

async fn futures_catch_unwind<F: Future>(future: F) -> std::thread::Result<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|context| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(context)
        })) {
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    })
    .await
}
