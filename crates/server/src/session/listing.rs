//! LIST, NLST and MLSD (RFC 959 §4.1.3, RFC 3659 §7), the wildcards of NLST and LIST, and
//! the [`Walk`] that produces every listing, STAT's on the control connection included.
//!
//! A listing is never held whole. A [`Walk`] keeps the directory's descriptor and read position
//! between steps; each [`Walk::step`] runs on the blocking pool and reads, stats and formats a
//! bounded batch (at most [`STEP_BYTES`] of text, [`STEP_NAMES`] names or [`STEP_TIME`] of
//! work), then returns; the caller writes that text with its usual timeout and asks for the
//! next ([`Listing::next`]). The client's reading paces the walk, and while it does not read,
//! its session waits on the event loop holding one step's text, not a thread. Steps take a
//! permit from a small server-wide pool ([`step_permits`]), so the steps of many sessions'
//! listings interleave on a few threads and leave the rest of the blocking pool (logins, opens,
//! uploads) free. The connection a listing is written to gets a capped kernel send buffer
//! ([`cap_send_buffer`]), so backpressure reaches the walk after a few steps, not after the
//! kernel has queued megabytes of it.
//!
//! Order: a directory whose names fit in [`SORT_BUDGET`] is read whole first and listed sorted
//! by name, as `ls` and vsftpd do; a bigger one is listed in the order the file system returns
//! it (RFC 3659 leaves MLSD's order open; RFC 959 LIST/NLST have none), because sorting it
//! would hold every name in memory.
//!
//! Names FTP cannot carry are left out and counted in one log line per listing: a name that is
//! not UTF-8 (RFC 2640 paths are UTF-8, and a lossy form could name another file), and one with
//! a control character ([`listing::listable_name`]: a CR or LF would forge entries; no command
//! can name such a file anyway). An entry that cannot be stat'ed (gone since the read, no
//! permission) is left out too, not the whole listing.

use std::ffi::{CStr, CString};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ferry_proto::glob::{self, Pattern};
use ferry_proto::listing::{self, Entry, EntryKind, Facts};
use ferry_proto::reply::Escaped;
use ferry_proto::{Reply, VirtualPath};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::transfer::classify;
use super::{Flow, Session};
use crate::data;
use crate::error::{Error, Result};
use crate::storage::is_part_name;
use crate::storage::local::LocalHome;
use crate::storage::s3::S3Home;
use crate::storage::{Home, StorageError, MAX_LIST_ENTRIES};

/// Text one step produces before it returns (it finishes the line it is on).
const STEP_BYTES: usize = 64 * 1024;
/// Names one step reads, shown or not (a wildcard that matches nothing still yields).
const STEP_NAMES: usize = 4096;
/// Work one step does before it returns (on a cold disk every stat may wait for it).
const STEP_TIME: Duration = Duration::from_millis(10);
/// A directory whose names (with 9 bytes of bookkeeping each) fit here is listed sorted.
const SORT_BUDGET: usize = 64 * 1024;
/// Room for one step's text: a step stops past [`STEP_BYTES`], after the line it is on (a
/// 255-byte name, even escaped for the control connection, stays well within).
const TEXT_ROOM: usize = STEP_BYTES + 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListKind {
    List,
    Nlst,
    Mlsd,
}

/// The path in a LIST/NLST/STAT argument, after options such as "-la" that clients send.
pub(super) fn list_path_arg(arg: &str) -> Option<&str> {
    if arg.starts_with('-') {
        match arg.split_once(' ') {
            Some((_, rest)) if !rest.trim().is_empty() => Some(rest.trim_start()),
            _ => None,
        }
    } else {
        Some(arg)
    }
}

/// What each entry of a listing becomes.
#[derive(Debug, Clone)]
pub(super) enum Format {
    /// NLST: the name after `prefix`, the directory a wildcard was typed with (`sub/`).
    Names { prefix: String },
    /// LIST and STAT: an `ls -l` line; `now` (unix seconds) picks time of day or year.
    Long { now: i64 },
    /// MLSD: RFC 3659 facts, as chosen with OPTS MLST.
    Facts(Facts),
}

/// Where a listing's lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// A data connection: each line as it is, ending in CRLF.
    Data,
    /// The control connection (STAT): each line as a middle line of a multi-line reply.
    Reply,
}

/// One listing in progress: a directory being read (or a single entry), and what its entries
/// become. `Send`, so its steps may run on any blocking thread.
pub(super) struct Walk {
    items: Items,
    format: Format,
    framing: Framing,
    /// A wildcard (NLST/LIST `*.txt`): only the names it matches.
    pattern: Option<Pattern>,
    /// The directory (or the one file), for symlinks and the log line.
    path: VirtualPath,
    /// The line being formatted (kept to reuse its allocation).
    line: String,
    shown: usize,
    skipped: Skipped,
}

enum Items {
    /// LIST or NLST of a file: its one entry, until shown.
    One(Option<Entry>),
    Dir {
        /// Read from here ([`LocalHome::open_listing`]); entries are stat'ed relative to it.
        dir: rustix::fs::Dir,
        order: Order,
    },
    /// A page of a directory that storage lists in pages (objects: at most 1,000 entries,
    /// already sorted), with their facts; [`Listing`] fetches the next one.
    Page(Vec<Entry>),
}

enum Order {
    /// Nothing read yet: the first step decides.
    Unread,
    /// The whole directory, sorted.
    Sorted(SortedNames),
    /// Too big to sort: directory order.
    Streamed,
    Done,
}

/// What a listing left out, for its one log line.
#[derive(Debug, Default)]
struct Skipped {
    not_utf8: usize,
    control: usize,
    unreadable: usize,
    /// The first name left out, as `Debug` shows it (control characters and bytes that are
    /// not UTF-8 escaped), so it cannot forge log lines; cut to a sane length.
    example: Option<String>,
}

impl Skipped {
    fn note(&mut self, name: &CStr) {
        if self.example.is_none() {
            let mut shown = format!("{name:?}");
            if shown.len() > 120 {
                let mut cut = 120;
                while !shown.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.truncate(cut);
                shown.push_str("...");
            }
            self.example = Some(shown);
        }
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        let s = &self.skipped;
        if s.not_utf8 + s.control + s.unreadable > 0 {
            tracing::warn!(
                dir = %Escaped(self.path.as_str()),
                not_utf8 = s.not_utf8,
                control_chars = s.control,
                unreadable = s.unreadable,
                first = s.example.as_deref().unwrap_or(""),
                "listing left out names FTP cannot carry or could not stat"
            );
        }
    }
}

/// A small directory's names, packed: each with its NUL, one allocation for all.
#[derive(Default)]
struct SortedNames {
    bytes: Vec<u8>,
    /// (start, length with the NUL) in `bytes`, in listing order once sorted.
    spans: Vec<(u32, u32)>,
    next: usize,
}

impl SortedNames {
    /// Bytes held, bookkeeping included (for [`SORT_BUDGET`]).
    fn cost(&self) -> usize {
        self.bytes.len() + self.spans.len() * 9
    }

    fn push(&mut self, name: &CStr) {
        let name = name.to_bytes_with_nul();
        // Within SORT_BUDGET, so both fit in u32.
        self.spans
            .push((self.bytes.len() as u32, name.len() as u32));
        self.bytes.extend_from_slice(name);
    }

    fn sort(&mut self) {
        let bytes = &self.bytes;
        let name = |&(start, len): &(u32, u32)| &bytes[start as usize..][..len as usize];
        // NUL sorts below every byte of a name, so "a\0" < "ab\0" as "a" < "ab"; and byte
        // order is code point order for UTF-8.
        self.spans.sort_unstable_by(|a, b| name(a).cmp(name(b)));
    }

    fn next(&mut self) -> Option<CString> {
        let &(start, len) = self.spans.get(self.next)?;
        self.next += 1;
        let name = &self.bytes[start as usize..][..len as usize];
        CStr::from_bytes_with_nul(name).ok().map(CStr::to_owned)
    }
}

/// One name read from a directory.
enum RawName {
    Read(rustix::fs::DirEntry),
    Kept(CString),
}

impl RawName {
    fn as_c_str(&self) -> &CStr {
        match self {
            RawName::Read(e) => e.file_name(),
            RawName::Kept(c) => c,
        }
    }
}

/// The next name of `dir`, "." and ".." skipped.
fn read_name(dir: &mut rustix::fs::Dir) -> std::io::Result<Option<rustix::fs::DirEntry>> {
    loop {
        match dir.read() {
            None => return Ok(None),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(e)) => {
                let name = e.file_name().to_bytes();
                if name != b"." && name != b".." {
                    return Ok(Some(e));
                }
            }
        }
    }
}

/// The next name in listing order; the first call decides the order (see [`SORT_BUDGET`]).
fn next_name(dir: &mut rustix::fs::Dir, order: &mut Order) -> std::io::Result<Option<RawName>> {
    if let Order::Unread = order {
        let mut names = SortedNames::default();
        *order = loop {
            match read_name(dir)? {
                None => {
                    names.sort();
                    break Order::Sorted(names);
                }
                Some(e) if names.cost() + e.file_name().to_bytes().len() + 10 > SORT_BUDGET => {
                    // Too big to sort: start again, and list as the directory comes.
                    dir.rewind();
                    break Order::Streamed;
                }
                Some(e) => names.push(e.file_name()),
            }
        };
    }
    let name = match order {
        Order::Unread | Order::Done => None,
        Order::Sorted(names) => names.next().map(RawName::Kept),
        Order::Streamed => read_name(dir)?.map(RawName::Read),
    };
    if name.is_none() {
        // Frees a sorted directory's names.
        *order = Order::Done;
    }
    Ok(name)
}

/// `line` as a middle line of a multi-line reply, CRLF included. [`Reply`] formats it (a line
/// that starts with three digits is indented, text that could act on a terminal escaped), so
/// STAT sends what one whole reply would have: the line is put between an empty first and
/// last line, whose fixed forms are cut off again.
fn push_reply_line(line: &str, out: &mut String) {
    let bytes = Reply::multi(213, vec![String::new(), line.to_owned(), String::new()]).to_bytes();
    let middle = bytes
        .strip_prefix(b"213-\r\n")
        .and_then(|b| b.strip_suffix(b"213 \r\n"));
    // Always there: Reply writes the line between those two fixed ones.
    if let Some(Ok(middle)) = middle.map(std::str::from_utf8) {
        out.push_str(middle);
    }
}

impl Walk {
    fn new(items: Items, path: VirtualPath, format: Format, framing: Framing) -> Walk {
        Walk {
            items,
            format,
            framing,
            pattern: None,
            path,
            line: String::new(),
            shown: 0,
            skipped: Skipped::default(),
        }
    }

    /// The listing of the directory `path` (blocking). Opening it is all this does, so a
    /// missing or unreadable directory fails here, before any reply; the reading happens in
    /// the steps.
    pub(super) fn dir(
        home: &LocalHome,
        path: VirtualPath,
        format: Format,
        framing: Framing,
    ) -> std::io::Result<Walk> {
        let dir = home.open_listing(&path)?;
        let items = Items::Dir {
            dir,
            order: Order::Unread,
        };
        Ok(Walk::new(items, path, format, framing))
    }

    /// A listing of one entry (LIST or NLST of a file).
    pub(super) fn one(entry: Entry, path: VirtualPath, format: Format, framing: Framing) -> Walk {
        Walk::new(Items::One(Some(entry)), path, format, framing)
    }

    /// Shows only the names `pattern` matches ([`ferry_proto::glob`]; `*` skips dot files).
    pub(super) fn matching(mut self, pattern: Pattern) -> Walk {
        self.pattern = Some(pattern);
        self
    }

    /// Appends the next piece of the listing to `out` (blocking: on the blocking pool).
    /// Returns whether more is to come. A step stops once `out` holds [`STEP_BYTES`], it has
    /// read [`STEP_NAMES`] names, or it has worked for [`STEP_TIME`]; `out` may then be empty
    /// (a wildcard that matched nothing yet).
    pub(super) fn step(&mut self, home: &LocalHome, out: &mut String) -> std::io::Result<bool> {
        self.step_until(home, out, Instant::now() + STEP_TIME)
    }

    /// [`Walk::step`] with its deadline. The clock is read every 32 names (a stat takes about
    /// a microsecond), so every step gets through at least 31 names, however late: a walk
    /// always ends.
    fn step_until(
        &mut self,
        home: &LocalHome,
        out: &mut String,
        deadline: Instant,
    ) -> std::io::Result<bool> {
        let mut read = 0;
        loop {
            if self.shown >= MAX_LIST_ENTRIES {
                return Ok(false);
            }
            let late = read % 32 == 31 && Instant::now() >= deadline;
            if out.len() >= STEP_BYTES || read >= STEP_NAMES || late {
                return Ok(true);
            }
            let name = match &mut self.items {
                Items::One(entry) => {
                    if let Some(entry) = entry.take() {
                        self.shown += 1;
                        self.push_line(Some(&entry), &entry.name, out);
                    }
                    return Ok(false);
                }
                Items::Dir { dir, order } => match next_name(dir, order)? {
                    Some(name) => name,
                    None => return Ok(false),
                },
                Items::Page(entries) => {
                    let entries = std::mem::take(entries);
                    self.show_page(entries, out);
                    return Ok(false);
                }
            };
            read += 1;
            let name = name.as_c_str();
            let Some(text) = self.admit(name) else {
                continue;
            };
            let entry = match self.format {
                Format::Names { .. } => None,
                Format::Long { .. } | Format::Facts(_) => match self.entry(home, name, text) {
                    Some(entry) => Some(entry),
                    None => continue,
                },
            };
            self.shown += 1;
            self.push_line(entry.as_ref(), text, out);
        }
    }

    /// The facts of an entry of the directory, or None (counted) if it cannot be stat'ed.
    fn entry(&mut self, home: &LocalHome, name: &CStr, text: &str) -> Option<Entry> {
        let Items::Dir { dir, .. } = &self.items else {
            return None;
        };
        match home.listing_entry(dir, &self.path, text) {
            Ok(entry) => Some(entry),
            Err(_) => {
                self.skipped.unreadable += 1;
                self.skipped.note(name);
                None
            }
        }
    }

    /// Formats a whole page of entries ([`Items::Page`]: at most 1,000, so one step).
    fn show_page(&mut self, entries: Vec<Entry>, out: &mut String) {
        for entry in entries {
            if self.shown >= MAX_LIST_ENTRIES {
                return;
            }
            if !listing::listable_name(&entry.name) {
                self.skipped.control += 1;
                if let Ok(name) = std::ffi::CString::new(entry.name.as_str()) {
                    self.skipped.note(&name);
                }
                continue;
            }
            if self
                .pattern
                .as_ref()
                .is_some_and(|p| !p.matches(&entry.name))
            {
                continue;
            }
            self.shown += 1;
            let facts = !matches!(self.format, Format::Names { .. });
            self.push_line(facts.then_some(&entry), &entry.name, out);
        }
    }

    /// The name as text, if the listing shows it (counting what it leaves out).
    fn admit<'n>(&mut self, name: &'n CStr) -> Option<&'n str> {
        let Ok(text) = name.to_str() else {
            self.skipped.not_utf8 += 1;
            self.skipped.note(name);
            return None;
        };
        if !listing::listable_name(text) {
            self.skipped.control += 1;
            self.skipped.note(name);
            return None;
        }
        // Upload part files are the server's business until they complete.
        if is_part_name(text) {
            return None;
        }
        match &self.pattern {
            Some(p) if !p.matches(text) => None,
            _ => Some(text),
        }
    }

    /// Formats one entry into `out` (`entry` is None for NLST, which shows names only).
    fn push_line(&mut self, entry: Option<&Entry>, name: &str, out: &mut String) {
        let line = &mut self.line;
        line.clear();
        match (&self.format, entry) {
            (Format::Names { prefix }, _) => {
                line.push_str(prefix);
                line.push_str(name);
            }
            (Format::Long { now }, Some(e)) => {
                listing::list_line(e, *now, line);
                line.truncate(line.trim_end_matches("\r\n").len());
            }
            (Format::Facts(facts), Some(e)) => listing::mlsx_facts_selected(e, *facts, line),
            (_, None) => return,
        }
        match self.framing {
            Framing::Data => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            Framing::Reply => push_reply_line(line, out),
        }
    }
}

/// The kernel send buffer of a connection a listing is written to (the kernel doubles it).
/// Left alone, Linux grows it up to `tcp_wmem`'s maximum (4 MiB by default) even for a client
/// that never reads, so such a client made the walk run through about 4 MiB of listing, all
/// queued in kernel memory, before backpressure stopped it. Capped, the walk stops after a
/// few steps. 256 KiB in flight still carries about 5 MB/s at 50 ms of round trip; listings
/// are far smaller than the files RETR sends with the kernel's own tuning.
const LISTING_SEND_BUFFER: usize = 128 * 1024;

pub(super) fn cap_send_buffer(stream: &crate::stream::Stream) {
    let tcp = match stream {
        crate::stream::Stream::Plain(tcp) => tcp,
        crate::stream::Stream::Tls(tls) => tls.get_ref().0,
        crate::stream::Stream::Detached => return,
    };
    // Only a cap: a socket that refuses it keeps working as before.
    let _ = socket2::SockRef::from(tcp).set_send_buffer_size(LISTING_SEND_BUFFER);
}

/// Listing steps that may run at once, server-wide: half the CPUs (at least one, at most
/// eight). A step is short (see [`Walk::step`]) and the semaphore is fair, so each listing
/// waits its turn behind at most one step of every other, and however many sessions list,
/// they keep no more than these threads busy.
fn step_permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Semaphore::new(cpus.div_ceil(2).clamp(1, 8))
    })
}

async fn step_permit() -> Result<tokio::sync::SemaphorePermit<'static>> {
    step_permits()
        .acquire()
        .await
        .map_err(|_| Error::Io(std::io::Error::other("listing permits closed")))
}

/// Where a listing's entries come from.
enum Source {
    /// A local directory, read in steps on the blocking pool.
    Local(LocalHome),
    /// Pages of a directory in object storage; `next` is where the next page starts (None:
    /// none left).
    Pages {
        home: S3Home,
        dir: VirtualPath,
        next: Option<String>,
    },
}

/// A listing being sent: its walk, and the text of the step taken last.
pub(super) struct Listing {
    source: Source,
    /// None once the walk has ended.
    walk: Option<Walk>,
    text: String,
    /// `text` holds a step not handed out yet (the first, taken when the listing opened).
    ready: bool,
}

impl Listing {
    /// The next piece of the listing, or None at its end. Each call runs one step on the
    /// blocking pool; the piece lives until the next call, so the caller writes it first.
    pub(super) async fn next(&mut self) -> Result<Option<&[u8]>> {
        loop {
            if std::mem::take(&mut self.ready) && !self.text.is_empty() {
                return Ok(Some(self.text.as_bytes()));
            }
            let Some(mut walk) = self.walk.take() else {
                return Ok(None);
            };
            let mut text = std::mem::take(&mut self.text);
            text.clear();
            let (walk, text, more) = match &mut self.source {
                Source::Local(home) => {
                    let permit = step_permit().await?;
                    home.run(move |v| {
                        let _held = permit;
                        let more = walk.step(v, &mut text)?;
                        Ok::<_, Error>((walk, text, more))
                    })
                    .await?
                }
                Source::Pages { home, dir, next } => {
                    let Some(token) = next.take() else {
                        continue;
                    };
                    let (entries, after) = home.list_page(dir, Some(token)).await?;
                    walk.show_page(entries, &mut text);
                    *next = after;
                    // No page past the most a listing shows.
                    let more = next.is_some() && walk.shown < MAX_LIST_ENTRIES;
                    (walk, text, more)
                }
            };
            self.text = text;
            self.ready = true;
            // A finished walk is dropped here, on the session's task: its log line (names
            // left out) lands in the session's span.
            self.walk = more.then_some(walk);
        }
    }
}

/// A path that does not exist may be a wildcard for its directory's names (NLST and LIST only:
/// RFC 3659 has MLSD name one directory): its directory and pattern; else `missing`.
fn as_wildcard(
    path: &VirtualPath,
    missing: StorageError,
) -> std::result::Result<(VirtualPath, Pattern), StorageError> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(pattern)) if glob::has_wildcards(pattern) => {
            Ok((dir, Pattern::new(pattern)))
        }
        _ => Err(missing),
    }
}

/// [`Session::open_listing`] of a home in object storage: the first page is read here, so a
/// missing directory fails before any reply. `format` is for a directory or a file,
/// `matched` for the names of a wildcard (NLST prefixes them as the client typed them).
async fn open_pages(
    home: S3Home,
    path: VirtualPath,
    kind: ListKind,
    framing: Framing,
    format: Format,
    matched: Format,
) -> Result<Listing> {
    let (dir, walk) = match home.stat(&path).await {
        Ok(top) if top.kind == EntryKind::Dir => {
            let walk = Walk::new(Items::Page(Vec::new()), path.clone(), format, framing);
            (path, walk)
        }
        Ok(_) if kind == ListKind::Mlsd => {
            return Err(Error::BadArgument(
                "MLSD needs a directory; use MLST".into(),
            ));
        }
        Ok(top) => {
            let walk = Walk::one(top, path.clone(), format, framing);
            let mut listing = Listing {
                source: Source::Pages {
                    home,
                    dir: path,
                    next: None,
                },
                walk: Some(walk),
                text: String::new(),
                ready: false,
            };
            // One entry: shown by the first call of `next`, through the local step.
            listing.first_entry()?;
            return Ok(listing);
        }
        Err(e) if e.is_not_found() && kind != ListKind::Mlsd => {
            let (dir, pattern) = as_wildcard(&path, e)?;
            let walk =
                Walk::new(Items::Page(Vec::new()), dir.clone(), matched, framing).matching(pattern);
            (dir, walk)
        }
        Err(e) => return Err(e.into()),
    };
    let (entries, next) = home.list_page(&dir, None).await?;
    let mut walk = walk;
    let mut text = String::with_capacity(TEXT_ROOM);
    walk.show_page(entries, &mut text);
    let more = next.is_some() && walk.shown < MAX_LIST_ENTRIES;
    Ok(Listing {
        source: Source::Pages { home, dir, next },
        walk: more.then_some(walk),
        text,
        ready: true,
    })
}

impl Listing {
    /// Shows a one-entry walk ([`Items::One`]) into the listing's text at once.
    fn first_entry(&mut self) -> Result<()> {
        if let Some(walk) = &mut self.walk {
            if let Items::One(entry) = &mut walk.items {
                if let Some(entry) = entry.take() {
                    walk.shown += 1;
                    let name = entry.name.clone();
                    walk.push_line(Some(&entry), &name, &mut self.text);
                }
            }
        }
        self.walk = None;
        self.ready = true;
        Ok(())
    }
}

impl Session {
    /// Opens the listing of `path` and takes its first step, in one trip to the blocking
    /// pool (a small directory is listed whole in it). `typed` is the path as the client
    /// wrote it: NLST of a wildcard names its matches with the same directory prefix, so each
    /// line is a path the client can RETR. Errors (no such path, MLSD of a file) come from
    /// here, before any reply.
    pub(super) async fn open_listing(
        &mut self,
        path: &VirtualPath,
        typed: &str,
        kind: ListKind,
        framing: Framing,
    ) -> Result<Listing> {
        let (files, _) = self.resolve(".")?;
        let path = path.clone();
        let typed_dir = typed
            .rsplit_once('/')
            .map(|(dir, _)| format!("{dir}/"))
            .unwrap_or_default();
        let facts = self.mlst_facts;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let format = move |prefix: String| match kind {
            ListKind::Nlst => Format::Names { prefix },
            ListKind::List => Format::Long { now },
            ListKind::Mlsd => Format::Facts(facts),
        };
        let home = match files {
            Home::Local(home) => home,
            // Object storage lists in pages, here on the session's task.
            Home::S3(home) => {
                return open_pages(
                    home,
                    path,
                    kind,
                    framing,
                    format(String::new()),
                    format(typed_dir),
                )
                .await
            }
        };
        let permit = step_permit().await?;
        let opened = home
            .run(move |v| {
                let _held = permit;
                let walk = match v.stat(&path) {
                    Ok(top) if top.kind == EntryKind::Dir => {
                        Walk::dir(v, path, format(String::new()), framing)?
                    }
                    Ok(_) if kind == ListKind::Mlsd => {
                        return Ok(Err(Error::BadArgument(
                            "MLSD needs a directory; use MLST".into(),
                        )));
                    }
                    Ok(top) => Walk::one(top, path, format(String::new()), framing),
                    // A name that exists is itself, wildcards or not; one that does not may
                    // be a pattern for its directory's names (NLST/LIST only: RFC 3659 has
                    // MLSD name one directory).
                    Err(e) if e.is_not_found() && kind != ListKind::Mlsd => {
                        let (dir, pattern) = as_wildcard(&path, e)?;
                        Walk::dir(v, dir, format(typed_dir), framing)?.matching(pattern)
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut walk = walk;
                let mut text = String::with_capacity(TEXT_ROOM);
                let more = walk.step(v, &mut text)?;
                Ok::<_, Error>(Ok((walk, text, more)))
            })
            .await?;
        let (walk, text, more) = opened?;
        Ok(Listing {
            source: Source::Local(home),
            walk: more.then_some(walk),
            text,
            ready: true,
        })
    }

    pub(super) async fn list(&mut self, arg: Option<String>, kind: ListKind) -> Result<Flow> {
        let target = self.take_data_target()?;
        let path_arg = match kind {
            ListKind::Mlsd => arg.as_deref(),
            _ => arg.as_deref().and_then(list_path_arg),
        };
        let typed = path_arg.unwrap_or(".");
        let (_, path) = self.resolve(typed)?;
        let mut listing = self.open_listing(&path, typed, kind, Framing::Data).await?;
        let progress = Arc::new(AtomicU64::new(0));
        let sent = progress.clone();
        let task = async move {
            let stall = target.stall;
            let mut stream = target.connect().await?;
            cap_send_buffer(&stream);
            let mut n = 0;
            while let Some(text) = listing.next().await? {
                n += data::send_bytes(&mut stream, text, &sent, stall)
                    .await
                    .map_err(classify)?;
            }
            stream.shutdown().await.map_err(classify)?;
            Ok(n)
        };
        let verb = match kind {
            ListKind::List => "LIST",
            ListKind::Nlst => "NLST",
            ListKind::Mlsd => "MLSD",
        };
        self.start_transfer(
            "Here comes the directory listing".into(),
            format!("{verb} {path}"),
            progress,
            task,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::PART_SUFFIX;
    use std::collections::BTreeSet;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn list_options_are_not_paths() {
        assert_eq!(list_path_arg("-la"), None);
        assert_eq!(list_path_arg("-la sub dir"), Some("sub dir"));
        assert_eq!(list_path_arg("sub"), Some("sub"));
        assert_eq!(list_path_arg("-a "), None);
    }

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().resolve(s).expect("valid path")
    }

    fn touch(path: &std::path::Path) {
        std::fs::write(path, b"").expect("create");
    }

    const NAMES: Format = Format::Names {
        prefix: String::new(),
    };

    /// Runs a walk to its end; returns each step's text.
    fn steps(home: &LocalHome, mut walk: Walk) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut text = String::new();
            let more = walk.step(home, &mut text).expect("step");
            out.push(text);
            if !more {
                return out;
            }
        }
    }

    fn lines(steps: &[String]) -> Vec<String> {
        steps.concat().lines().map(str::to_owned).collect()
    }

    #[test]
    fn small_directory_is_listed_sorted_in_one_step() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("d");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        for name in ["b", "a", "c.txt", "Z", ".hidden", "a\\b", "é"] {
            touch(&dir.join(name));
        }
        touch(&dir.join(format!(".a{PART_SUFFIX}")));
        let home = LocalHome::open(tmp.path()).expect("open");
        let walk = Walk::dir(&home, vp("d"), NAMES, Framing::Data).expect("walk");
        let steps = steps(&home, walk);
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(
            lines(&steps),
            [".hidden", "Z", "a", "a\\b", "b", "c.txt", "sub", "é"]
        );
        assert!(steps[0].ends_with("\r\n"));
    }

    /// A directory too big to sort: every entry exactly once, in directory order, in steps
    /// that each stay near STEP_BYTES, and the facts of each entry right.
    #[test]
    fn big_directory_streams_in_bounded_steps() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("big");
        std::fs::create_dir(&dir).expect("mkdir");
        let n = 12_000;
        for i in 0..n {
            std::fs::write(dir.join(format!("file-{i:05}.dat")), vec![b'x'; i % 7]).expect("w");
        }
        let home = LocalHome::open(tmp.path()).expect("open");
        let walk =
            Walk::dir(&home, vp("big"), Format::Facts(Facts::ALL), Framing::Data).expect("walk");
        let steps = steps(&home, walk);
        assert!(steps.len() > 10, "{} steps", steps.len());
        assert!(steps.iter().all(|s| s.len() <= STEP_BYTES + 512));
        let mut seen = BTreeSet::new();
        for line in lines(&steps) {
            let (facts, name) = line.split_once(' ').expect("facts and name");
            let i: usize = name[5..10].parse().expect("number");
            assert!(
                facts.starts_with(&format!("type=file;size={};", i % 7)),
                "{line}"
            );
            assert!(seen.insert(name.to_owned()), "{name} twice");
        }
        assert_eq!(seen.len(), n);
        // Same for NLST, which reads no facts.
        let names = lines(&steps_of(&home, "big", NAMES));
        assert_eq!(names.len(), n);
        assert_eq!(names.iter().collect::<BTreeSet<_>>(), seen.iter().collect());
    }

    fn steps_of(home: &LocalHome, dir: &str, format: Format) -> Vec<String> {
        let walk = Walk::dir(home, vp(dir), format, Framing::Data).expect("walk");
        steps(home, walk)
    }

    /// Names FTP cannot carry are left out; the rest of the directory is listed, and a
    /// directory whose own name is not UTF-8 does not break its parent's listing.
    #[test]
    fn names_ftp_cannot_carry_are_left_out() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).expect("mkdir");
        let os = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_owned();
        touch(&dir.join(os(b"caf\xe9.txt")));
        std::fs::create_dir(dir.join(os(b"dir\xff"))).expect("mkdir");
        touch(&dir.join("evil\r\n-rw-r--r--    1 ftp      ftp             0 Jan 01 00:00 forged"));
        touch(&dir.join("esc\u{1b}[31m"));
        touch(&dir.join("good.txt"));
        touch(&dir.join("é.txt"));
        let home = LocalHome::open(tmp.path()).expect("open");
        for format in [NAMES, Format::Long { now: 0 }, Format::Facts(Facts::ALL)] {
            let mut walk = Walk::dir(&home, vp("d"), format.clone(), Framing::Data).expect("walk");
            let mut text = String::new();
            assert!(!walk.step(&home, &mut text).expect("step"));
            let names: Vec<&str> = text
                .lines()
                .map(|l| match format {
                    Format::Names { .. } => l,
                    Format::Long { .. } => l.rsplit_once(' ').expect("name").1,
                    Format::Facts(_) => l.split_once(' ').expect("name").1,
                })
                .collect();
            assert_eq!(names, ["good.txt", "é.txt"], "{format:?}: {text:?}");
            let s = &walk.skipped;
            assert_eq!((s.not_utf8, s.control, s.unreadable), (2, 2, 0));
            assert!(s.example.as_deref().is_some_and(|e| !e.contains('\n')));
        }
    }

    /// A step out of time leaves the names it could not stat for the next one: nothing is
    /// lost, repeated or reordered.
    #[test]
    fn late_steps_leave_their_names_for_the_next() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let n = 1500;
        for i in 0..n {
            touch(&tmp.path().join(format!("{i:04}")));
        }
        let home = LocalHome::open(tmp.path()).expect("open");
        let mut walk = Walk::dir(
            &home,
            VirtualPath::root(),
            Format::Facts(Facts::ALL),
            Framing::Data,
        )
        .expect("walk");
        let mut text = String::new();
        let mut steps = 0;
        loop {
            let mut piece = String::new();
            let late = Instant::now() - Duration::from_secs(1);
            let more = walk.step_until(&home, &mut piece, late).expect("step");
            text.push_str(&piece);
            steps += 1;
            if !more {
                break;
            }
        }
        assert!(steps > n / 32, "{steps} steps");
        let names: Vec<String> = text
            .lines()
            .map(|l| l.split_once(' ').expect("name").1.to_owned())
            .collect();
        let want: Vec<String> = (0..n).map(|i| format!("{i:04}")).collect();
        assert_eq!(names, want);
    }

    /// An entry gone between the read and its stat is left out, not the listing.
    #[test]
    fn entries_that_vanish_are_left_out() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).expect("mkdir");
        // Small enough to sort (all names read at the first step), long enough for
        // several steps of MLSD text.
        let n = 2000;
        for i in 0..n {
            touch(&dir.join(format!("{i:04}")));
        }
        let home = LocalHome::open(tmp.path()).expect("open");
        let mut walk =
            Walk::dir(&home, vp("d"), Format::Facts(Facts::ALL), Framing::Data).expect("walk");
        let mut first = String::new();
        assert!(walk.step(&home, &mut first).expect("step"));
        let shown = first.lines().count();
        assert!(shown < n);
        for i in 0..n {
            std::fs::remove_file(dir.join(format!("{i:04}"))).expect("rm");
        }
        let mut rest = String::new();
        while walk.step(&home, &mut rest).expect("step") {}
        assert_eq!(rest, "");
        assert_eq!(walk.skipped.unreadable, n - shown);
    }

    #[test]
    fn wildcards_match_names_sorted_without_part_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = LocalHome::open(tmp.path()).expect("open");
        std::fs::create_dir(tmp.path().join("d")).expect("mkdir");
        for name in [
            "b.txt",
            "a.txt",
            ".hidden.txt",
            "c.bin",
            "a\\b.txt",
            "d/inner.txt",
        ] {
            touch(&tmp.path().join(name));
        }
        touch(&tmp.path().join(format!(".a.txt{PART_SUFFIX}")));
        let glob = |dir: &str, pattern: &str| {
            let prefix = format!("{dir}/").trim_start_matches('/').to_owned();
            let walk = Walk::dir(&home, vp(dir), Format::Names { prefix }, Framing::Data)
                .expect("walk")
                .matching(Pattern::new(pattern));
            lines(&steps(&home, walk))
        };
        assert_eq!(glob("/", "*.txt"), ["a.txt", "a\\b.txt", "b.txt"]);
        assert_eq!(glob("/", ".*"), [".hidden.txt"]);
        assert_eq!(glob("/", "[ab].*"), ["a.txt", "b.txt"]);
        assert_eq!(glob("/", "?"), ["d"]);
        assert_eq!(glob("/d", "*"), ["d/inner.txt"]);
        assert!(glob("/", "*.zip").is_empty());
        assert!(Walk::dir(&home, vp("/nope"), NAMES, Framing::Data).is_err());
    }

    /// A wildcard that matches nothing in a big directory still yields between steps.
    #[test]
    fn a_step_reads_a_bounded_number_of_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for i in 0..(STEP_NAMES * 2 + 10) {
            touch(&tmp.path().join(format!("n{i}")));
        }
        let home = LocalHome::open(tmp.path()).expect("open");
        let walk = Walk::dir(&home, VirtualPath::root(), NAMES, Framing::Data)
            .expect("walk")
            .matching(Pattern::new("*.zip"));
        let steps = steps(&home, walk);
        assert!(steps.len() >= 3, "{}", steps.len());
        assert!(steps.iter().all(String::is_empty));
    }

    /// STAT's lines are what a whole 213 reply would carry: a line that starts with a code
    /// is indented; anything that could end a line is escaped by the reply serializer.
    #[test]
    fn reply_lines_cannot_end_the_reply() {
        let mut out = String::new();
        push_reply_line(
            "drwxr-xr-x    2 ftp      ftp          4096 Nov 23 03:57 d",
            &mut out,
        );
        push_reply_line("213 End of status", &mut out);
        assert_eq!(
            out,
            "drwxr-xr-x    2 ftp      ftp          4096 Nov 23 03:57 d\r\n 213 End of status\r\n"
        );
        let mut out = String::new();
        push_reply_line("a\r\n213 forged", &mut out);
        assert_eq!(out.matches("\r\n").count(), 1, "{out:?}");
    }

    /// The session's side: pieces handed out in order, the first one taken at the open.
    #[tokio::test]
    async fn listing_hands_out_every_step() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let n = 9000;
        for i in 0..n {
            touch(&tmp.path().join(format!("entry-{i:05}")));
        }
        let home = LocalHome::open(tmp.path()).expect("open");
        let mut walk = Walk::dir(&home, VirtualPath::root(), NAMES, Framing::Data).expect("walk");
        let mut text = String::new();
        assert!(walk.step(&home, &mut text).expect("step"));
        let mut listing = Listing {
            source: Source::Local(home.clone()),
            walk: Some(walk),
            text,
            ready: true,
        };
        let mut all = Vec::new();
        let mut pieces = 0;
        while let Some(piece) = listing.next().await.expect("next") {
            assert!(piece.len() <= STEP_BYTES + 512);
            all.extend_from_slice(piece);
            pieces += 1;
        }
        assert!(pieces > 1);
        let all = String::from_utf8(all).expect("utf-8");
        assert_eq!(all.lines().collect::<BTreeSet<_>>().len(), n);
    }
}
