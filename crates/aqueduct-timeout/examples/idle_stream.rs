//! Reads a stream of heartbeats and gives up when the sender goes quiet for longer than the idle limit.

use std::time::Duration;

use aqueduct_timeout::IdleTimeoutExt;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::sleep;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (sender, mut receiver) = mpsc::channel::<u32>(8);
    tokio::spawn(async move {
        for beat in 0..3 {
            sleep(Duration::from_millis(10)).await;
            if sender.send(beat).await.is_err() {
                return;
            }
        }
        // The sender stalls but keeps the channel open: only the idle timeout notices.
        sleep(Duration::from_secs(3_600)).await;
        drop(sender);
    });

    let beats = futures::stream::poll_fn(move |context| receiver.poll_recv(context));
    let mut beats = std::pin::pin!(beats.idle_timeout(Duration::from_millis(50)));
    while let Some(beat) = beats.next().await {
        match beat {
            Ok(beat) => eprintln!("heartbeat {beat}"),
            Err(elapsed) => eprintln!("the sender went quiet: {elapsed}"),
        }
    }
    eprintln!("stream ended");
}
