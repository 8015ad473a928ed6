//! `Command::parse` over a mix of realistic control lines (what curl, lftp, FileZilla and
//! ftplib send in a session), including a few the parser must reject.
//! Run: `cargo bench -p ferry-proto --bench parse`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry_proto::Command;

const LINES: &[&[u8]] = &[
    b"USER bench",
    b"PASS benchpass",
    b"SYST",
    b"FEAT",
    b"OPTS UTF8 ON",
    b"PWD",
    b"TYPE I",
    b"TYPE A N",
    b"EPSV",
    b"PASV",
    b"EPRT |1|127.0.0.1|50123|",
    b"PORT 127,0,0,1,195,80",
    b"CWD /pub/releases/v1.2.3",
    b"CDUP",
    b"SIZE bench_big.bin",
    b"MDTM docs/annual report 2024.pdf",
    b"REST 1048576",
    b"RETR bench_small/f0042.bin",
    b"STOR uploads/photo 2024-05-01 (1).jpg",
    b"APPE logs/server.log",
    b"MLSD",
    b"MLST bench_big.bin",
    b"LIST -la",
    b"NLST incoming",
    b"MKD new folder",
    b"RNFR draft.txt",
    b"RNTO final.txt",
    b"DELE old.log",
    b"HASH bench_big.bin",
    b"xsha256 images/debian-12.iso",
    b"STAT",
    b"NOOP",
    b"ABOR",
    b"QUIT",
    b"SITE CHMOD 644 a.txt",
    b"FOOBAR x",
    b"RETR",
    b"CWD caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac",
];

fn parse_mix(c: &mut Criterion) {
    let mut g = c.benchmark_group("command_parse");
    g.throughput(Throughput::Elements(LINES.len() as u64));
    g.bench_function("mix", |b| {
        b.iter(|| {
            for line in LINES {
                let _ = black_box(Command::parse(black_box(line)));
            }
        })
    });
    g.finish();
    let mut g = c.benchmark_group("command_parse_one");
    g.throughput(Throughput::Elements(1));
    for (name, line) in [
        ("retr", &b"RETR bench_small/f0042.bin"[..]),
        ("epsv", b"EPSV"),
        ("unknown", b"FOOBAR x"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(Command::parse(black_box(line))))
        });
    }
    g.finish();
}

criterion_group!(benches, parse_mix);
criterion_main!(benches);
