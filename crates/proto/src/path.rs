//! Virtual paths: the path a logged-in FTP user sees, with their home directory as `/`.
//!
//! This module owns the *lexical* side of path handling: turning a command argument
//! (RFC 959 `pathname`, e.g. for CWD, RETR, MKD) into a normalised absolute path, and the
//! RFC 959 quoting used in `257` replies (PWD/MKD). It does no IO: the server opens the
//! result of [`VirtualPath::to_relative`] through a kernel-side jail, which is what actually
//! stops symlinks from escaping. Normalising here first means `..` can never climb above the
//! home root lexically (it behaves like `..` at `/` inside a chroot).
//!
//! A name may hold any character but NUL, `/` and control characters: `\` included, as on Linux
//! itself (rclone and vsftpd store such names; the check in `resolve_onto` says why that is safe).

use std::fmt;

/// Longest allowed single path component, in bytes (the usual `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;
/// Longest allowed resolved path, in bytes (the usual `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// Why an FTP path argument was refused. All of these map to a `550`/`553` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The argument contained a NUL byte, which no filesystem call can carry.
    Nul,
    /// The argument contained another control character (CR, TAB, ...), which would break
    /// reply and listing framing when the name is echoed back.
    Control,
    /// A component was longer than [`MAX_COMPONENT`] bytes.
    ComponentTooLong,
    /// The resolved path was longer than [`MAX_PATH`] bytes.
    TooLong,
    /// The argument was empty.
    Empty,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            PathError::Nul => "path contains a NUL byte",
            PathError::Control => "path contains a control character",
            PathError::ComponentTooLong => "path component is longer than 255 bytes",
            PathError::TooLong => "path is longer than 4096 bytes",
            PathError::Empty => "path is empty",
        };
        f.write_str(text)
    }
}

impl std::error::Error for PathError {}

/// A normalised path inside the user's home.
///
/// Invariant: always absolute, `/`-separated, with no empty, `.` or `..` components and no
/// trailing `/` except for the root itself. Every component is at most [`MAX_COMPONENT`]
/// bytes, contains no NUL or control character, and the whole is at most [`MAX_PATH`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath(String);

impl VirtualPath {
    /// The user's home directory, `/`.
    pub fn root() -> Self {
        VirtualPath("/".to_owned())
    }

    /// Resolve an FTP argument against the current directory `self`.
    ///
    /// Absolute arguments start at the home root. `..` at the root stays at the root (like
    /// chroot), `.` and repeated `/` are collapsed, a trailing `/` is ignored.
    ///
    /// Errors: empty argument ([`PathError::Empty`]), NUL ([`PathError::Nul`]), another control
    /// character ([`PathError::Control`]), any component of the argument over [`MAX_COMPONENT`]
    /// bytes ([`PathError::ComponentTooLong`], checked even if a later `..` would drop it),
    /// result over [`MAX_PATH`] bytes ([`PathError::TooLong`]).
    pub fn resolve(&self, arg: &str) -> Result<VirtualPath, PathError> {
        let base = if arg.starts_with('/') {
            ""
        } else {
            self.inner()
        };
        resolve_onto(base, arg)
    }

    /// The absolute form, e.g. `/a/b` (or `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Relative form for opening under the jail root: `a/b`, or `.` for the root.
    pub fn to_relative(&self) -> &str {
        if self.is_root() {
            "."
        } else {
            self.inner()
        }
    }

    /// Whether this is the home root `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<VirtualPath> {
        if self.is_root() {
            return None;
        }
        // The invariant guarantees a leading '/', so rfind always succeeds; the fallback
        // only exists to avoid a panic path.
        match self.0.rfind('/') {
            Some(0) | None => Some(VirtualPath::root()),
            Some(i) => Some(VirtualPath(self.0[..i].to_owned())),
        }
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        self.0.rsplit('/').next()
    }

    /// Append `name` (which may itself contain `/`, `.` or `..`) to this path, exactly like
    /// [`resolve`](Self::resolve) with a relative argument. A leading `/` in `name` does
    /// *not* restart at the root: the result is always computed relative to `self`.
    pub fn join(&self, name: &str) -> Result<VirtualPath, PathError> {
        resolve_onto(self.inner(), name)
    }

    /// The path without the root's lone `/`: `""` for root, `a/b` otherwise.
    fn inner(&self) -> &str {
        self.0.strip_prefix('/').unwrap_or(&self.0)
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resolve `arg` lexically on top of `base`, the components of an already valid path
/// (`""` for the root, otherwise `a/b` without a leading slash).
fn resolve_onto(base: &str, arg: &str) -> Result<VirtualPath, PathError> {
    if arg.is_empty() {
        return Err(PathError::Empty);
    }
    if arg.contains('\0') {
        return Err(PathError::Nul);
    }
    // `\` is an ordinary name character, not a separator: the server only ever hands these
    // names to Linux, where `/` is the one separator (cap-std and openat treat `\` as a byte
    // of the name), so `..\..\etc` is one odd file name in the current directory, never a way
    // up. Clients that mean a Windows path get "not found". Refusing it would make files that
    // rclone, vsftpd or a shell user put in a home unreachable.
    if arg.chars().any(char::is_control) {
        return Err(PathError::Control);
    }

    let mut parts: Vec<&str> = base.split('/').filter(|c| !c.is_empty()).collect();
    for comp in arg.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                // At the root this is a no-op, mirroring `..` at `/` in a chroot.
                parts.pop();
            }
            name => {
                if name.len() > MAX_COMPONENT {
                    return Err(PathError::ComponentTooLong);
                }
                parts.push(name);
            }
        }
    }

    let len: usize = parts.iter().map(|p| p.len() + 1).sum();
    if len > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if parts.is_empty() {
        return Ok(VirtualPath::root());
    }
    let mut out = String::with_capacity(len);
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    Ok(VirtualPath(out))
}

/// Quote a path for a `257` reply (PWD, MKD) as RFC 959 requires: wrap it in double quotes
/// and double every embedded `"`, so clients can find the end of the name.
pub fn quote_for_257(p: &VirtualPath) -> String {
    let s = p.as_str();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root()
            .resolve(s)
            .expect("test path must be valid")
    }

    #[test]
    fn resolve_table() {
        let long_ok = "x".repeat(MAX_COMPONENT);
        let long_bad = "x".repeat(MAX_COMPONENT + 1);
        let long_ok_expected = format!("/{long_ok}");
        let long_bad_then_up = format!("{long_bad}/..");
        // 16 components of 255 bytes plus slashes = 16 * 256 = 4096 bytes: exactly the limit.
        let at_limit = vec![long_ok.as_str(); 16].join("/");
        let at_limit_expected = format!("/{at_limit}");
        let over_limit = format!("{at_limit}/y");
        // Intermediate length over the limit is fine if `..` brings it back under.
        let over_then_back = format!("{at_limit}/y/..");

        let cases: Vec<(&str, &str, Result<&str, PathError>)> = vec![
            // (cwd, arg, expected)
            ("/", "a", Ok("/a")),
            ("/a", "b", Ok("/a/b")),
            ("/a/b", "c/d", Ok("/a/b/c/d")),
            ("/a/b", "/x", Ok("/x")),
            ("/a/b", "/", Ok("/")),
            ("/a/b", "//", Ok("/")),
            ("/a/b", "..", Ok("/a")),
            ("/a/b", "../..", Ok("/")),
            ("/a/b", "../../..", Ok("/")),
            ("/", "..", Ok("/")),
            ("/", "../../etc/passwd", Ok("/etc/passwd")),
            ("/a", "/../../etc/passwd", Ok("/etc/passwd")),
            ("/a", "b/../../../c", Ok("/c")),
            ("/", "a/./b//c/", Ok("/a/b/c")),
            ("/q", ".", Ok("/q")),
            ("/q", "./", Ok("/q")),
            ("/", "...", Ok("/...")),
            ("/", ".hidden", Ok("/.hidden")),
            ("/", "with space ", Ok("/with space ")),
            ("/", "数据/🚀.txt", Ok("/数据/🚀.txt")),
            ("/数据", "../🚀", Ok("/🚀")),
            ("/", "", Err(PathError::Empty)),
            ("/a", "", Err(PathError::Empty)),
            ("/", "a\0b", Err(PathError::Nul)),
            ("/", "\0", Err(PathError::Nul)),
            ("/", "a\\b", Ok("/a\\b")),
            ("/", "..\\..\\etc", Ok("/..\\..\\etc")),
            ("/a", "\\", Ok("/a/\\")),
            ("/a", "b\\..", Ok("/a/b\\..")),
            ("/a", "..\\", Ok("/a/..\\")),
            ("/", "a\nb", Err(PathError::Control)),
            ("/", "a\x7fb", Err(PathError::Control)),
            ("/", "a\u{85}b", Err(PathError::Control)),
            ("/", "a\rb", Err(PathError::Control)),
            ("/", "a\tb", Err(PathError::Control)),
            ("/", &long_ok, Ok(&long_ok_expected)),
            ("/", &long_bad, Err(PathError::ComponentTooLong)),
            ("/", &long_bad_then_up, Err(PathError::ComponentTooLong)),
            ("/", &at_limit, Ok(&at_limit_expected)),
            ("/", &over_limit, Err(PathError::TooLong)),
            ("/", &over_then_back, Ok(&at_limit_expected)),
        ];
        for (cwd, arg, want) in cases {
            let got = vp(cwd).resolve(arg);
            let got = got.as_ref().map(VirtualPath::as_str).map_err(|e| *e);
            assert_eq!(got, want, "cwd={cwd:?} arg={arg:?}");
        }
    }

    #[test]
    fn too_long_counts_cwd() {
        // 15 components of 255 bytes in the cwd (3840 bytes); 256 more bytes fit exactly,
        // 257 do not.
        let comp = "z".repeat(MAX_COMPONENT);
        let cwd = vp(&vec![comp.as_str(); 15].join("/"));
        assert_eq!(cwd.as_str().len(), 3840);
        assert_eq!(cwd.resolve(&comp).map(|p| p.as_str().len()), Ok(4096));
        assert_eq!(cwd.resolve(&format!("{comp}/q")), Err(PathError::TooLong));
        assert_eq!(cwd.join(&format!("{comp}/q")), Err(PathError::TooLong));
    }

    #[test]
    fn accessors_table() {
        // (path, to_relative, is_root, parent, file_name)
        let cases = [
            ("/", ".", true, None, None),
            ("/a", "a", false, Some("/"), Some("a")),
            ("/a/b/c", "a/b/c", false, Some("/a/b"), Some("c")),
            (
                "/数据/🚀.txt",
                "数据/🚀.txt",
                false,
                Some("/数据"),
                Some("🚀.txt"),
            ),
        ];
        for (p, rel, root, parent, name) in cases {
            let v = vp(p);
            assert_eq!(v.as_str(), p);
            assert_eq!(v.to_string(), p);
            assert_eq!(v.to_relative(), rel, "{p}");
            assert_eq!(v.is_root(), root, "{p}");
            assert_eq!(v.parent().as_ref().map(VirtualPath::as_str), parent, "{p}");
            assert_eq!(v.file_name(), name, "{p}");
        }
        assert_eq!(VirtualPath::root(), vp("/"));
    }

    #[test]
    fn join_table() {
        let cases: [(&str, &str, Result<&str, PathError>); 8] = [
            ("/", "a", Ok("/a")),
            ("/a", "b", Ok("/a/b")),
            ("/a", "b/c", Ok("/a/b/c")),
            ("/a", "..", Ok("/")),
            // Unlike resolve, join never restarts at the root.
            ("/a", "/b", Ok("/a/b")),
            ("/a", "", Err(PathError::Empty)),
            ("/a", "x\\y", Ok("/a/x\\y")),
            ("/a", "x\ty", Err(PathError::Control)),
        ];
        for (base, name, want) in cases {
            let got = vp(base).join(name);
            let got = got.as_ref().map(VirtualPath::as_str).map_err(|e| *e);
            assert_eq!(got, want, "base={base:?} name={name:?}");
        }
    }

    #[test]
    fn quote_257_table() {
        let cases = [
            ("/", "\"/\""),
            ("/a b", "\"/a b\""),
            ("/say \"hi\"", "\"/say \"\"hi\"\"\""),
            ("/\"", "\"/\"\"\""),
            ("/数据", "\"/数据\""),
        ];
        for (p, want) in cases {
            assert_eq!(quote_for_257(&vp(p)), want, "{p}");
        }
    }

    #[test]
    fn error_display() {
        let cases = [
            (PathError::Nul, "path contains a NUL byte"),
            (PathError::Control, "path contains a control character"),
            (
                PathError::ComponentTooLong,
                "path component is longer than 255 bytes",
            ),
            (PathError::TooLong, "path is longer than 4096 bytes"),
            (PathError::Empty, "path is empty"),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
            let _: &dyn std::error::Error = &e;
        }
    }
}
