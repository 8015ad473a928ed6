//! `VirtualPath::resolve` of an arbitrary argument against an arbitrary current directory.
//!
//! Input: segments separated by 0xFF (a byte UTF-8 never uses): every segment but the last is
//! a CWD argument, applied in turn as the server does (a refused one leaves the directory as
//! it was; a segment that starts with 0xFE is applied 16 times, to reach the length limits
//! with short inputs); the last is the argument resolved against the result.
//!
//! Checks: no panic; every path produced is absolute and normalised (no empty, `.` or `..`
//! component, no trailing `/`), holds no NUL, CR, LF or other control character, keeps the
//! component and path limits; it resolves to itself from anywhere; its parent joined with its
//! name gives it back; an absolute argument ignores the current directory; `join` equals
//! `resolve` for relative arguments; refusals have the documented kind; the 257 quoting
//! unquotes to the path.
#![no_main]

use ferry_proto::path::{quote_for_257, MAX_COMPONENT, MAX_PATH};
use ferry_proto::{PathError, VirtualPath};
use libfuzzer_sys::fuzz_target;

fn check(p: &VirtualPath) {
    let s = p.as_str();
    assert!(s.starts_with('/'), "not absolute: {s:?}");
    assert!(s.len() <= MAX_PATH, "{} bytes", s.len());
    assert!(
        !s.chars().any(char::is_control),
        "control character in {s:?}"
    );
    if p.is_root() {
        assert_eq!(s, "/");
        assert_eq!(p.to_relative(), ".");
        assert_eq!(p.parent(), None);
        assert_eq!(p.file_name(), None);
    } else {
        for comp in s[1..].split('/') {
            assert!(
                !matches!(comp, "" | "." | ".."),
                "component {comp:?} in {s:?}"
            );
            assert!(comp.len() <= MAX_COMPONENT, "component of {}", comp.len());
        }
        assert_eq!(p.to_relative(), &s[1..]);
        let parent = p.parent().expect("not the root");
        let name = p.file_name().expect("not the root");
        assert_eq!(parent.join(name).as_ref(), Ok(p), "parent + name of {s:?}");
        assert!(s.starts_with(parent.as_str()));
    }
    assert_eq!(
        VirtualPath::root().resolve(s).as_ref(),
        Ok(p),
        "{s:?} again"
    );
    assert_eq!(p.resolve(".").as_ref(), Ok(p));
    assert_eq!(p.resolve(s).as_ref(), Ok(p));

    let quoted = quote_for_257(p);
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .expect("quoted");
    assert_eq!(inner.replace("\"\"", "\""), s);
}

fuzz_target!(|data: &[u8]| {
    let mut segments: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    let arg = segments.pop().unwrap_or_default();
    let mut cwd = VirtualPath::root();
    for seg in segments {
        let (times, seg) = match seg.strip_prefix(&[0xfe]) {
            Some(s) => (16, s),
            None => (1, seg),
        };
        let seg = String::from_utf8_lossy(seg);
        for _ in 0..times {
            if let Ok(next) = cwd.resolve(&seg) {
                cwd = next;
            }
        }
    }
    check(&cwd);

    let arg = String::from_utf8_lossy(arg);
    let got = cwd.resolve(&arg);
    match &got {
        Ok(p) => check(p),
        Err(e) => {
            let want = if arg.is_empty() {
                Some(PathError::Empty)
            } else if arg.contains('\0') {
                Some(PathError::Nul)
            } else if arg.chars().any(char::is_control) {
                Some(PathError::Control)
            } else {
                None // a length limit
            };
            if let Some(want) = want {
                assert_eq!(*e, want, "{arg:?}");
            } else {
                assert!(
                    matches!(e, PathError::TooLong | PathError::ComponentTooLong),
                    "{e:?} for {arg:?}"
                );
            }
        }
    }
    if arg.starts_with('/') {
        assert_eq!(got, VirtualPath::root().resolve(&arg));
    } else {
        assert_eq!(got, cwd.join(&arg));
        // Without `..`, a relative argument stays below the current directory.
        if let Ok(p) = &got {
            if !arg.split('/').any(|c| c == "..") && !cwd.is_root() {
                let below = p.as_str() == cwd.as_str()
                    || p.as_str().starts_with(&format!("{}/", cwd.as_str()));
                assert!(below, "{p} not below {cwd}");
            }
        }
    }
});
