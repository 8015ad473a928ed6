//! Anti-hammering: failed logins slow down, and an address that keeps failing is locked out.
//!
//! Two tables of recent failures: by client IP and by user name. A failure is answered only
//! after a delay that grows with both counts (so guessing one password costs more each time,
//! from one address or from many); an IP with `max_failures` failures inside the window is
//! refused with 421 for the lockout period. A successful login is never delayed, so the owner
//! of an account under attack from elsewhere still gets in at once. Unknown and known user
//! names are counted and delayed alike, so the delay reveals nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures are forgotten this long after the last one.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Entries kept per table before expired ones are swept (bounded memory under attack).
const MAX_ENTRIES: usize = 100_000;
const IP_BASE_DELAY: Duration = Duration::from_millis(250);
const USER_STEP_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Default)]
struct Tables {
    ips: HashMap<IpAddr, Failures>,
    users: HashMap<String, Failures>,
}

pub struct LoginGuard {
    tables: Mutex<Tables>,
    max_failures: u32,
    lockout: Duration,
}

/// What the session does after a failed login.
#[derive(Debug, PartialEq, Eq)]
pub struct Penalty {
    /// Wait this long before answering 530.
    pub delay: Duration,
    /// This failure locked the address out.
    pub locked: bool,
}

impl LoginGuard {
    pub fn new(max_failures: u32, lockout: Duration) -> LoginGuard {
        LoginGuard {
            tables: Mutex::new(Tables::default()),
            max_failures: max_failures.max(1),
            lockout,
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remaining lockout of an address, if it is locked.
    pub fn locked(&self, ip: IpAddr) -> Option<Duration> {
        self.locked_at(ip, Instant::now())
    }

    fn locked_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let tables = self.tables();
        let until = tables.ips.get(&ip.to_canonical())?.locked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    pub fn failure(&self, ip: IpAddr, user: &str) -> Penalty {
        self.failure_at(ip, user, Instant::now())
    }

    fn failure_at(&self, ip: IpAddr, user: &str, now: Instant) -> Penalty {
        let mut tables = self.tables();
        sweep(&mut tables, now);
        let ip_entry = bump(&mut tables.ips, ip.to_canonical(), now);
        let mut locked = false;
        if ip_entry.count >= self.max_failures && ip_entry.locked_until.is_none_or(|u| u <= now) {
            ip_entry.locked_until = Some(now + self.lockout);
            // A new lockout starts a new count, so the next one needs max_failures again.
            ip_entry.count = 0;
            locked = true;
        }
        let ip_count = ip_entry.count.max(1);
        let user_count = if tables.users.len() < MAX_ENTRIES || tables.users.contains_key(user) {
            bump(&mut tables.users, user.to_owned(), now).count
        } else {
            1
        };
        let ip_delay = IP_BASE_DELAY.saturating_mul(1 << (ip_count - 1).min(5));
        let user_delay = USER_STEP_DELAY.saturating_mul(user_count);
        Penalty {
            delay: ip_delay.max(user_delay).min(MAX_DELAY),
            locked,
        }
    }

    /// A good login clears the address's record (not a lockout) and the name's.
    pub fn success(&self, ip: IpAddr, user: &str) {
        let mut tables = self.tables();
        if let Some(e) = tables.ips.get_mut(&ip.to_canonical()) {
            e.count = 0;
        }
        tables.users.remove(user);
    }
}

fn bump<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, Failures>,
    key: K,
    now: Instant,
) -> &mut Failures {
    let e = table.entry(key).or_insert(Failures {
        count: 0,
        last: now,
        locked_until: None,
    });
    if now.duration_since(e.last) > WINDOW {
        e.count = 0;
    }
    e.count += 1;
    e.last = now;
    e
}

fn sweep(tables: &mut Tables, now: Instant) {
    let live = |f: &Failures| {
        now.duration_since(f.last) <= WINDOW || f.locked_until.is_some_and(|u| u > now)
    };
    if tables.ips.len() >= MAX_ENTRIES {
        tables.ips.retain(|_, f| live(f));
    }
    if tables.users.len() >= MAX_ENTRIES {
        tables.users.retain(|_, f| live(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn delays_grow_and_the_address_locks_after_max_failures() {
        let g = LoginGuard::new(3, Duration::from_secs(60));
        let now = Instant::now();
        let a = g.failure_at(ip("10.0.0.1"), "alice", now);
        let b = g.failure_at(ip("10.0.0.1"), "alice", now);
        assert!(b.delay > a.delay, "{b:?} should exceed {a:?}");
        assert!(!a.locked && !b.locked);
        assert_eq!(g.locked_at(ip("10.0.0.1"), now), None);
        let c = g.failure_at(ip("10.0.0.1"), "alice", now);
        assert!(c.locked);
        assert!(g.locked_at(ip("10.0.0.1"), now).is_some());
        assert_eq!(
            g.locked_at(ip("10.0.0.2"), now),
            None,
            "other addresses are not locked"
        );
        assert_eq!(
            g.locked_at(ip("10.0.0.1"), now + Duration::from_secs(61)),
            None,
            "lockout ends"
        );
    }

    #[test]
    fn name_under_attack_from_many_addresses_slows_each_failure() {
        let g = LoginGuard::new(100, Duration::from_secs(60));
        let now = Instant::now();
        let first = g.failure_at(ip("10.0.0.1"), "bob", now);
        for i in 2..20 {
            g.failure_at(ip(&format!("10.0.0.{i}")), "bob", now);
        }
        let later = g.failure_at(ip("10.0.0.99"), "bob", now);
        assert!(later.delay > first.delay);
        assert!(later.delay <= MAX_DELAY);
        g.success(ip("10.0.1.1"), "bob");
        let after = g.failure_at(ip("10.0.1.2"), "bob", now);
        assert_eq!(after.delay, first.delay, "success resets the name's count");
    }
}
