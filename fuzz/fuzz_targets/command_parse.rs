//! `Command::parse` on arbitrary bytes (a control line with its line end removed).
//!
//! Checks: no panic; for every command that parses, its wire form (`Display`) parses back to
//! the same command: `Command::parse(cmd.to_string()) == cmd`, as `display_round_trips` in
//! command.rs claims for every variant. Equality is of the command, not the text: aliases
//! (XPWD), case (`type a`), `TYPE L 8`, `+1` numbers and a trailing `.000` fraction all print
//! in one canonical form. The round trip must hold for all variants, so none is excluded.
//! Also: the wire form starts with `verb()`, and a password never shows in `Debug`.
#![no_main]

use ferry_proto::command::Secret;
use ferry_proto::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = Command::parse(data) else {
        return;
    };
    let wire = cmd.to_string();
    assert!(
        wire.starts_with(cmd.verb()),
        "{wire:?} does not start with {}",
        cmd.verb()
    );
    assert_eq!(
        Command::parse(wire.as_bytes()),
        Ok(cmd.clone()),
        "wire form {wire:?} of {:?}",
        String::from_utf8_lossy(data)
    );
    if let Command::Pass(Secret(p)) = &cmd {
        let shown = format!("{cmd:?}");
        if !p.is_empty() && !"Pass(Secret(****))".contains(p.as_str()) {
            assert!(!shown.contains(p.as_str()), "password in {shown}");
        }
    }
});
