//! A unix-socket proxy in front of the Docker engine's socket, that a test can cut and restore:
//! the engine "goes away" for the worker without stopping the engine every other test (and
//! helper) shares. Cutting stops accepting, removes the socket and shuts every open connection
//! down; restoring binds the same path again.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct UnixProxy {
    path: PathBuf,
    target: PathBuf,
    state: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    accept: JoinHandle<()>,
}

impl UnixProxy {
    /// Listens at `path`, forwarding each connection to `target`.
    pub fn start(path: &Path, target: &Path) -> UnixProxy {
        let mut p = UnixProxy {
            path: path.to_owned(),
            target: target.to_owned(),
            state: None,
        };
        p.restore();
        p
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine is gone: nothing accepted, every open connection shut down.
    pub fn cut(&mut self) {
        let Some(r) = self.state.take() else { return };
        r.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
        // Wake the accept loop so it sees `stop`.
        let _ = UnixStream::connect(&self.path);
        for c in r.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = r.accept.join();
    }

    /// The engine is back.
    pub fn restore(&mut self) {
        if self.state.is_some() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let target = self.target.clone();
        let accept = {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let client = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    };
                    let _ = client.set_nonblocking(false);
                    let Ok(upstream) = UnixStream::connect(&target) else {
                        continue;
                    };
                    {
                        let mut all = conns.lock().unwrap();
                        all.push(client.try_clone().unwrap());
                        all.push(upstream.try_clone().unwrap());
                    }
                    pump(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    pump(upstream, client);
                }
            })
        };
        self.state = Some(Running {
            stop,
            conns,
            accept,
        });
    }
}

/// Copies `from` to `to` on a thread until either side ends, then shuts both down.
fn pump(mut from: UnixStream, mut to: UnixStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}

impl Drop for UnixProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
