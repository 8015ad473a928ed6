//! Directory listing formatters over a 10,000-entry directory: `list_line` (LIST) and
//! `mlsx_facts` (MLSD), the way the server formats a directory into one buffer.
//! Run: `cargo bench -p ferry-proto --bench listing`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry_proto::listing::{list_line, mlsx_facts, Entry, EntryKind};

const N: usize = 10_000;
/// A fixed "now" (2026-11-23T00:00:00Z) so the recent/old date split is the same every run.
const NOW: i64 = 1_795_392_000;

fn entries() -> Vec<Entry> {
    (0..N)
        .map(|i| {
            let kind = match i % 50 {
                0..=4 => EntryKind::Dir,
                5 => EntryKind::Symlink,
                _ => EntryKind::File,
            };
            Entry {
                name: format!("entry_{i:05}.dat"),
                kind,
                size: (i as u64 * 7_919) % 50_000_000,
                // spread over the last two years: both `HH:MM` and `  YYYY` date forms
                mtime: NOW - (i as i64 * 6_311) % (2 * 365 * 86_400),
                mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
                nlink: if kind == EntryKind::Dir { 2 } else { 1 },
                unique: (0x803, 1_000_000 + i as u64),
            }
        })
        .collect()
}

fn listing(c: &mut Criterion) {
    let es = entries();
    let mut out = String::with_capacity(N * 96);
    let mut g = c.benchmark_group("listing_10k");
    g.throughput(Throughput::Elements(N as u64));
    // 2-3 ms per iteration: fewer samples, longer window than criterion's 100 in 5 s
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("list_line", |b| {
        b.iter(|| {
            out.clear();
            for e in &es {
                list_line(e, NOW, &mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("mlsx_facts", |b| {
        b.iter(|| {
            out.clear();
            for e in &es {
                mlsx_facts(e, &mut out);
                out.push_str("\r\n");
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, listing);
criterion_main!(benches);
