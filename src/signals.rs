//! Signal delivery: signal-hook's self-pipe thread turns SIGTERM/SIGINT into channel messages,
//! so the handlers themselves do nothing but write a byte.

use crossbeam_channel::Receiver;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts the `signals` thread; each SIGTERM/SIGINT arrives as its number.
pub fn spawn() -> std::io::Result<Receiver<i32>> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let (tx, rx) = crossbeam_channel::bounded(8);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}
