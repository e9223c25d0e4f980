//! Work sharing between replicas, pure: which shard a session belongs to
//! and what one replica does with its leases in one round (claim, release),
//! from a snapshot of the `leases` and `replicas` tables. No I/O, no clock:
//! the database's time comes in with the snapshot. Table-tested.
//!
//! The rules:
//! - a session's shard is a stable hash (FNV-1a, 64 bit) of
//!   `provider/session` modulo [`SHARDS`]: the same on every replica and
//!   every version, so replicas agree without talking;
//! - a replica's fair share is `ceil(SHARDS / live replicas)`;
//! - it claims shards nobody holds (free, or their lease expired), up to its
//!   fair share, all at once: a dead replica's sessions are taken over in
//!   one round;
//! - it releases shards only when it holds more than its fair share
//!   (hysteresis: an even split never moves), at most [`MAX_MOVES`] per
//!   round, so a joining replica takes work over gradually instead of the
//!   whole fleet moving (and being re-read) at once.

/// Shards sessions are split into. Fixed: every replica must agree.
pub const SHARDS: u32 = 64;

/// Shards a replica gives up per round at most when rebalancing.
pub const MAX_MOVES: usize = 8;

/// The shard of a session.
pub fn shard_of(provider: &str, session: &str) -> u32 {
    // FNV-1a: tiny, stable across platforms and Rust versions (std's hasher
    // is neither guaranteed).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in provider
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(session.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(SHARDS)).unwrap_or(0)
}

/// One row of the `leases` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub shard: u32,
    /// `None`: never held, or released.
    pub owner: Option<String>,
    /// Unix ms, database time.
    pub expires_at: i64,
    /// Incremented on every claim: a writer proves it still holds the shard
    /// by presenting the token it claimed with (fencing).
    pub token: i64,
}

/// What one round does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Shards to claim (free or expired), ascending.
    pub claim: Vec<u32>,
    /// Shards to give up, ascending.
    pub release: Vec<u32>,
}

/// The fair share of `live` replicas (at least 1 counted).
pub fn fair_share(live: usize) -> usize {
    let shards = SHARDS as usize;
    shards.div_ceil(live.max(1))
}

/// The round of replica `me`, given the lease rows, the replicas alive
/// (their heartbeat unexpired; `me` counts even if missing) and the
/// database's time `now`. Shards `me` holds unexpired count as held;
/// an expired shard of its own is claimed again (a new token).
pub fn plan(me: &str, leases: &[Lease], live_replicas: usize, now: i64) -> Plan {
    let fair = fair_share(live_replicas);
    let live = |l: &&Lease| l.owner.is_some() && l.expires_at > now;
    let mut held: Vec<u32> = leases
        .iter()
        .filter(live)
        .filter(|l| l.owner.as_deref() == Some(me))
        .map(|l| l.shard)
        .collect();
    held.sort_unstable();
    let mut free: Vec<u32> = leases
        .iter()
        .filter(|l| !live(l))
        .map(|l| l.shard)
        .collect();
    free.sort_unstable();
    if held.len() > fair {
        // Give up the highest shards first: deterministic, so the same
        // replica state always moves the same shards.
        let excess = (held.len() - fair).min(MAX_MOVES);
        let release = held.split_off(held.len() - excess);
        return Plan {
            claim: Vec::new(),
            release,
        };
    }
    let room = fair - held.len();
    free.truncate(room);
    Plan {
        claim: free,
        release: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(owners: &[(u32, Option<&str>, i64)]) -> Vec<Lease> {
        owners
            .iter()
            .map(|&(shard, owner, expires_at)| Lease {
                shard,
                owner: owner.map(str::to_string),
                expires_at,
                token: 1,
            })
            .collect()
    }

    /// All shards, each `(owner, expires_at)` from `f(shard)`.
    fn table(f: impl Fn(u32) -> (Option<&'static str>, i64)) -> Vec<Lease> {
        (0..SHARDS)
            .map(|s| {
                let (owner, expires_at) = f(s);
                Lease {
                    shard: s,
                    owner: owner.map(str::to_string),
                    expires_at,
                    token: 1,
                }
            })
            .collect()
    }

    #[test]
    fn the_shard_of_a_session_is_stable_and_spread() {
        // The function itself is pinned by `fnv1a_is_the_published_function`.
        assert_eq!(shard_of("waha", "default"), shard_of("waha", "default"));
        assert_ne!(shard_of("waha", "s1"), shard_of("waha", "s2"));
        let mut per_shard = vec![0u32; SHARDS as usize];
        for i in 0..6400 {
            per_shard[shard_of("waha", &format!("s{i}")) as usize] += 1;
        }
        // 100 per shard on average; a decent hash stays well within 2x.
        assert!(
            per_shard.iter().all(|&n| (50..=150).contains(&n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published FNV test
        // vectors, http://www.isthe.com/chongo/tech/comp/fnv/): changing the
        // hash would move every session at an upgrade.
        let fnv = |s: &str| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in s.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h
        };
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            u64::from(shard_of("p", "s")),
            fnv("p/s") % u64::from(SHARDS)
        );
    }

    #[test]
    fn fair_share_rounds_up() {
        for (live, want) in [(0, 64), (1, 64), (2, 32), (3, 22), (64, 1), (100, 1)] {
            assert_eq!(fair_share(live), want, "{live} replicas");
        }
    }

    #[test]
    fn rounds_from_a_snapshot() {
        let now = 1_000;
        let mine = |me: &'static str| move |_s: u32| (Some(me), now + 10);
        struct Case {
            name: &'static str,
            leases: Vec<Lease>,
            live: usize,
            claim: usize,
            release: Vec<u32>,
        }
        let cases = [
            Case {
                name: "alone on an empty table: claim everything",
                leases: table(|_| (None, 0)),
                live: 1,
                claim: 64,
                release: vec![],
            },
            Case {
                name: "second replica, all held by the other: nothing to claim",
                leases: table(mine("a")),
                live: 2,
                claim: 0,
                release: vec![],
            },
            Case {
                name: "the other died (expired): claim all of them in one round",
                leases: table(|_| (Some("a"), now - 1)),
                live: 1,
                claim: 64,
                release: vec![],
            },
            Case {
                name: "two live, half expired: claim up to the fair share",
                leases: table(|s| {
                    if s < 40 {
                        (Some("a"), now - 1)
                    } else {
                        (Some("c"), now + 5)
                    }
                }),
                live: 2,
                claim: 32,
                release: vec![],
            },
            Case {
                name: "an expired lease of my own is claimed again",
                leases: leases(&[(0, Some("me"), now - 1), (1, Some("me"), now + 5)]),
                live: 1,
                claim: 1,
                release: vec![],
            },
        ];
        for c in cases {
            let p = plan("me", &c.leases, c.live, now);
            assert_eq!(p.claim.len(), c.claim, "{}: {p:?}", c.name);
            assert_eq!(p.release, c.release, "{}", c.name);
        }
    }

    #[test]
    fn an_overfull_replica_releases_gradually_and_an_even_split_never_moves() {
        let now = 1_000;
        // I hold all 64, a second replica joined: give up 8 per round.
        let all_mine = table(|_| (Some("me"), now + 10));
        let p = plan("me", &all_mine, 2, now);
        assert_eq!(p.release, (56..64).collect::<Vec<_>>());
        assert!(p.claim.is_empty());
        // 33 of 64 with two replicas: one over the fair share of 32, released.
        let t = table(|s| {
            if s < 33 {
                (Some("me"), now + 10)
            } else {
                (Some("b"), now + 10)
            }
        });
        assert_eq!(plan("me", &t, 2, now).release, vec![32]);
        // Exactly the fair share: nothing moves, either way.
        let t = table(|s| {
            if s < 32 {
                (Some("me"), now + 10)
            } else {
                (Some("b"), now + 10)
            }
        });
        assert_eq!(plan("me", &t, 2, now), Plan::default());
        assert_eq!(plan("b", &t, 2, now), Plan::default());
        // Three replicas at 22/21/21: no moves (hysteresis of the round-up).
        let t = table(|s| match s {
            0..22 => (Some("me"), now + 10),
            22..43 => (Some("b"), now + 10),
            _ => (Some("c"), now + 10),
        });
        for r in ["me", "b", "c"] {
            assert_eq!(plan(r, &t, 3, now), Plan::default(), "{r}");
        }
    }

    #[test]
    fn joining_converges_without_thrashing() {
        // Simulate rounds of two replicas on one table until nothing moves.
        let now = 1_000;
        let mut t = table(|_| (Some("a"), now + 10));
        let mut rounds = 0;
        loop {
            let mut moved = false;
            for me in ["a", "b"] {
                let p = plan(me, &t, 2, now);
                for s in &p.release {
                    t[*s as usize].owner = None;
                    moved = true;
                }
                for s in &p.claim {
                    t[*s as usize].owner = Some(me.to_string());
                    t[*s as usize].token += 1;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
            rounds += 1;
            assert!(rounds < 20, "no convergence");
        }
        let count = |me: &str| t.iter().filter(|l| l.owner.as_deref() == Some(me)).count();
        assert_eq!((count("a"), count("b")), (32, 32));
        assert_eq!(rounds, 4, "32 shards move, 8 per round");
    }
}
