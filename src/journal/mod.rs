//! The outcome journal: what the worker promised the server, kept on disk so a crash
//! (`kill -9`, OOM kill, power loss) breaks no promise.
//!
//! One append-only file, `journal`, in the state directory. For each execution it records:
//! claimed (before `task_claimed` is queued), the group id of a direct task's process group,
//! ended with its terminal message (before the message is queued), and delivered (once the
//! link wrote and flushed the message). Each line carries a CRC-32 of its JSON. Records are
//! written at once (a `kill -9` cannot lose them: they are in the page cache) and fsynced
//! before the frame they guard is written to the socket: the link calls [`Journal::sync`]
//! first, so one fsync covers every frame queued meanwhile (group commit) and the supervisor
//! never waits on the disk. Executions that are delivered (or handed off) are done and
//! drop out of the live set; the file is rewritten with only the live set (write, fsync,
//! rename, fsync the directory) whenever it grows past [`COMPACT_AT`] bytes, so its size is
//! bounded by the tasks in flight, not by uptime.
//!
//! At startup [`Journal::open`] replays the file: executions ended but not delivered are sent
//! again, once; executions claimed but never ended belong to a crashed process and are resolved
//! by their backend (see `Backend::recover`). A torn or corrupt line is skipped with a warning.
//!
//! Write errors never stop the worker: the first one is logged and the journal goes quiet
//! (today's behaviour without a journal). No secret is ever written: lines hold ids, group ids
//! and terminal messages passed through the log redactor.

mod record;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

pub use record::{Record, Terminal, crc32};

use crate::backend::{Orphan, ProcessMark, TaskRef};
use crate::protocol::Outbound;

/// The journal is rewritten with only its live records once it grows past this size.
pub const COMPACT_AT: u64 = 256 * 1024;
const FILE: &str = "journal";
const TMP: &str = "journal.tmp";

/// What a crashed (or stopped) predecessor left to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Ended, but the terminal message was never confirmed flushed: send it again, once.
    pub undelivered: Vec<(TaskRef, Terminal)>,
    /// Claimed but never ended: the backend resolves them.
    pub unfinished: Vec<Orphan>,
    /// Lines skipped because their checksum or JSON was wrong (torn or corrupt).
    pub skipped: usize,
}

/// Why the journal cannot be used; the worker then runs without it.
#[derive(Debug)]
pub struct JournalError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot use the state directory {}: {} (set --state-dir or state_dir to a writable \
             directory; without it tasks are not carried across a crash)",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[derive(Debug, Clone, Default)]
struct Entry {
    backend: String,
    process: Option<ProcessMark>,
    /// `Some(terminal)` once ended (with `None` inside for a hand-off).
    ended: Option<Option<Terminal>>,
}

/// The executions not yet done, in the order they were claimed. A few entries (the tasks in
/// flight), so a vector beats a map in code size and speed alike.
#[derive(Default)]
struct Live(Vec<(TaskRef, Entry)>);

impl Live {
    fn insert(&mut self, task: &TaskRef, entry: Entry) {
        match self.get_mut(task) {
            Some(e) => *e = entry,
            None => self.0.push((task.clone(), entry)),
        }
    }

    fn get_mut(&mut self, task: &TaskRef) -> Option<&mut Entry> {
        self.0.iter_mut().find(|(t, _)| t == task).map(|(_, e)| e)
    }

    fn entry(&mut self, task: &TaskRef) -> &mut Entry {
        if let Some(i) = self.0.iter().position(|(t, _)| t == task) {
            return &mut self.0[i].1;
        }
        self.0.push((task.clone(), Entry::default()));
        let last = self.0.len() - 1;
        &mut self.0[last].1
    }

    fn remove(&mut self, task: &TaskRef) -> Option<Entry> {
        let i = self.0.iter().position(|(t, _)| t == task)?;
        Some(self.0.remove(i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&TaskRef, &Entry)> {
        self.0.iter().map(|(t, e)| (t, e))
    }
}

struct Inner {
    /// `None` after a write error: the journal is off.
    file: Option<File>,
    /// Records written since the last fsync.
    dirty: bool,
    live: Live,
    size: u64,
}

/// The journal of one state directory. Shared by the supervisor (claims, outcomes), the link
/// thread (deliveries) and the direct backend (process groups).
pub struct Journal {
    dir: PathBuf,
    compact_at: u64,
    inner: Mutex<Inner>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

impl Journal {
    /// Opens (creating it if needed, mode 0700) the journal in `dir`, replays it and compacts
    /// it at once, which also drops a torn tail.
    pub fn open(dir: &Path) -> Result<(Journal, Replay), JournalError> {
        Journal::open_compacting_at(dir, COMPACT_AT)
    }

    /// [`Journal::open`] with another compaction threshold (tests use a small one).
    pub fn open_compacting_at(
        dir: &Path,
        compact_at: u64,
    ) -> Result<(Journal, Replay), JournalError> {
        let err = |source| JournalError {
            path: dir.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        let (live, skipped) = match File::open(dir.join(FILE)) {
            Ok(f) => read_live(f).map_err(err)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Live::default(), 0),
            Err(e) => return Err(err(e)),
        };
        let mut replay = Replay {
            skipped,
            ..Replay::default()
        };
        for (task, entry) in live.iter() {
            match &entry.ended {
                Some(Some(terminal)) => replay.undelivered.push((task.clone(), terminal.clone())),
                Some(None) => {}
                None => replay.unfinished.push(Orphan {
                    task: task.clone(),
                    backend: entry.backend.clone(),
                    process: entry.process,
                }),
            }
        }
        let journal = Journal {
            dir: dir.to_owned(),
            compact_at,
            inner: Mutex::new(Inner {
                file: None,
                dirty: false,
                live,
                size: 0,
            }),
        };
        {
            let mut inner = journal.lock();
            journal.compact(&mut inner).map_err(err)?;
        }
        Ok((journal, replay))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Before `task_claimed` is queued.
    pub fn claimed(&self, task: &TaskRef, backend: &str) {
        let mut inner = self.lock();
        inner.live.insert(
            task,
            Entry {
                backend: backend.to_owned(),
                ..Entry::default()
            },
        );
        self.append(
            &mut inner,
            &Record::Claimed {
                task: task.task_id.clone(),
                exec: task.execution_id.clone(),
                backend: backend.to_owned(),
            },
        );
    }

    /// A direct task started a process group (the setup hook, the agent, the teardown hook).
    pub fn process(&self, task: &TaskRef, mark: ProcessMark) {
        let mut inner = self.lock();
        let Some(entry) = inner.live.get_mut(task) else {
            return;
        };
        entry.process = Some(mark);
        self.append(
            &mut inner,
            &Record::Process {
                task: task.task_id.clone(),
                exec: task.execution_id.clone(),
                pgid: mark.pgid,
                start: mark.start,
            },
        );
    }

    /// Before the terminal message is queued; `None` for a task handed off (done at once).
    pub fn ended(&self, task: &TaskRef, terminal: Option<Terminal>) {
        let mut inner = self.lock();
        match &terminal {
            None => {
                inner.live.remove(task);
            }
            Some(t) => {
                let entry = inner.live.entry(task);
                entry.ended = Some(Some(t.clone()));
            }
        }
        self.append(
            &mut inner,
            &Record::Ended {
                task: task.task_id.clone(),
                exec: task.execution_id.clone(),
                terminal,
            },
        );
    }

    /// The link flushed the task's terminal message.
    pub fn delivered(&self, task: &TaskRef) {
        let mut inner = self.lock();
        if inner.live.remove(task).is_none() {
            return;
        }
        self.append(
            &mut inner,
            &Record::Delivered {
                task: task.task_id.clone(),
                exec: task.execution_id.clone(),
            },
        );
    }

    /// Makes every record written so far durable (fsync). The link calls it before it writes
    /// frames to the socket, so a claim or an outcome never leaves before its record is on
    /// disk, and one fsync serves every frame queued meanwhile. A `kill -9` loses nothing that
    /// was written, synced or not (it is in the page cache); the sync is for power loss.
    pub fn sync(&self) {
        let mut inner = self.lock();
        if !inner.dirty {
            return;
        }
        let Some(file) = inner.file.as_ref() else {
            return;
        };
        match file.sync_data() {
            Ok(()) => inner.dirty = false,
            Err(e) => self.disable(&mut inner, &e),
        }
    }

    /// Executions not yet done (claimed and running, or ended and undelivered).
    pub fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// The journal file's current size in bytes.
    pub fn size(&self) -> u64 {
        self.lock().size
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, inner: &mut Inner, record: &Record) {
        let line = record.encode();
        let Some(file) = inner.file.as_mut() else {
            return;
        };
        match file.write_all(line.as_bytes()) {
            Ok(()) => {
                inner.size += line.len() as u64;
                inner.dirty = true;
            }
            Err(e) => return self.disable(inner, &e),
        }
        if inner.size > self.compact_at
            && let Err(e) = self.compact(inner)
        {
            self.disable(inner, &e);
        }
    }

    fn disable(&self, inner: &mut Inner, e: &io::Error) {
        log::warn!(
            "Cannot write the outcome journal in {}: {e}; continuing without it (tasks are not \
             carried across a crash)",
            self.dir.display()
        );
        inner.file = None;
    }

    /// Rewrites the file with the live set only.
    fn compact(&self, inner: &mut Inner) -> io::Result<()> {
        let tmp = self.dir.join(TMP);
        let mut text = String::new();
        for (task, entry) in inner.live.iter() {
            for record in live_records(task, entry) {
                text.push_str(&record.encode());
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(FILE))?;
        File::open(&self.dir)?.sync_all()?;
        inner.file = Some(OpenOptions::new().append(true).open(self.dir.join(FILE))?);
        inner.size = text.len() as u64;
        inner.dirty = false;
        Ok(())
    }
}

impl crate::backend::RecoveryNotes for Journal {
    fn process_started(&self, task: &TaskRef, mark: ProcessMark) {
        self.process(task, mark);
    }
}

/// The records that rebuild one live entry.
fn live_records(task: &TaskRef, entry: &Entry) -> Vec<Record> {
    let task_id = || task.task_id.clone();
    let exec = || task.execution_id.clone();
    let mut out = vec![Record::Claimed {
        task: task_id(),
        exec: exec(),
        backend: entry.backend.clone(),
    }];
    if let Some(p) = entry.process {
        out.push(Record::Process {
            task: task_id(),
            exec: exec(),
            pgid: p.pgid,
            start: p.start,
        });
    }
    if let Some(terminal) = &entry.ended {
        out.push(Record::Ended {
            task: task_id(),
            exec: exec(),
            terminal: terminal.clone(),
        });
    }
    out
}

/// Reads every line, skipping (and counting) the damaged ones, and folds them into the live set.
fn read_live(f: File) -> io::Result<(Live, usize)> {
    let mut live = Live::default();
    let mut skipped = 0;
    let mut reader = BufReader::new(f);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if body.is_empty() {
            continue;
        }
        let Some(record) = Record::decode(body) else {
            skipped += 1;
            continue;
        };
        apply(&mut live, record);
    }
    Ok((live, skipped))
}

fn apply(live: &mut Live, record: Record) {
    let (task_id, exec) = record.key();
    let task = TaskRef {
        task_id: task_id.to_owned(),
        execution_id: exec.map(str::to_owned),
    };
    match record {
        Record::Claimed { backend, .. } => {
            live.insert(
                &task,
                Entry {
                    backend,
                    ..Entry::default()
                },
            );
        }
        Record::Process { pgid, start, .. } => {
            if let Some(e) = live.get_mut(&task) {
                e.process = Some(ProcessMark { pgid, start });
            }
        }
        Record::Ended { terminal: None, .. } | Record::Delivered { .. } => {
            live.remove(&task);
        }
        Record::Ended {
            terminal: Some(t), ..
        } => {
            live.entry(&task).ended = Some(Some(t));
        }
    }
}

/// The journal's form of a terminal message, with its text passed through the log redactor
/// (a failure message can quote the agent's output, which may echo a task secret).
pub fn terminal_of(msg: &Outbound) -> Option<Terminal> {
    let redact = |s: &str| crate::redact::redact(s).into_owned();
    match msg {
        Outbound::Completed {
            message,
            task_state,
            ..
        } => Some(Terminal {
            completed: true,
            message: redact(message),
            task_state: task_state.clone(),
            failure_reason: None,
            exit_code: None,
            failure_details: None,
        }),
        Outbound::Failed {
            message,
            failure_reason,
            exit_code,
            failure_details,
            ..
        } => Some(Terminal {
            completed: false,
            message: redact(message),
            task_state: None,
            failure_reason: failure_reason.clone(),
            exit_code: *exit_code,
            failure_details: failure_details.as_deref().map(redact),
        }),
        _ => None,
    }
}

/// The message to send again for a journalled terminal.
pub fn outbound_of(task: &TaskRef, t: &Terminal) -> Outbound {
    if t.completed {
        Outbound::Completed {
            task_id: task.task_id.clone(),
            execution_id: task.execution_id.clone(),
            message: t.message.clone(),
            task_state: t.task_state.clone(),
        }
    } else {
        Outbound::Failed {
            task_id: task.task_id.clone(),
            execution_id: task.execution_id.clone(),
            message: t.message.clone(),
            failure_reason: t.failure_reason.clone(),
            exit_code: t.exit_code,
            failure_details: t.failure_details.clone(),
        }
    }
}

/// Whether `dir` could hold the journal, for `check`, which changes nothing: the directory
/// (or, when it does not exist yet, its nearest existing ancestor, where it would be created)
/// must be a writable, searchable directory.
pub fn probe(dir: &Path) -> Result<(), JournalError> {
    let err = |source| JournalError {
        path: dir.to_owned(),
        source,
    };
    let mut at = dir;
    while !at.exists() {
        at = match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    if !at.is_dir() {
        return Err(err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", at.display()),
        )));
    }
    nix::unistd::access(
        at,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|e| err(e.into()))
}

#[cfg(test)]
mod tests;
