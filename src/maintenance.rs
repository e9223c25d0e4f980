//! Maintenance windows (`[[maintenance]]`): recurring stretches of time during
//! which matching sessions are paused — no canaries, no restarts — because
//! someone plans to work on the gateway.
//!
//! This module owns the resolved form of one window ([`Window`]) and the pure
//! evaluation: given an instant, which occurrences of which windows cover a
//! session, when they end, and when the next one starts. It takes the time
//! as an argument and never reads a clock, does no I/O and does not log; the
//! scheduler (`scheduler/maintenance.rs`) turns the answers into machine
//! inputs, and `config` parses and validates the keys.
//!
//! Time rules (documented for users in `config.example.toml`):
//! - `start` is a wall-clock time in the window's `timezone`, on each listed
//!   weekday; the weekday is the day the window *starts* (a window that
//!   crosses midnight belongs to the day it began).
//! - `duration` is elapsed time: a "1h" window is 60 real minutes even when
//!   the clocks change inside it.
//! - A start that does not exist on a day (the clocks jump over it, e.g.
//!   02:30 on the spring-forward day in Europe/Berlin) is moved forward by
//!   the length of the jump (03:30), as RFC 5545 and most calendars do.
//! - A start that exists twice (the clocks fall back over it) is the first
//!   of the two.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::clock::Timestamp;

/// The longest window a config may declare. Longer is not maintenance but a
/// decommissioning (pause the session instead); the bound also keeps the
/// look-back in [`Window::covering`] short.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The reason a session paused by a window carries, followed by the
/// window's name. The scheduler recognises its own pauses by it (an
/// operator's pause has another reason and is never cut short by a window).
pub const REASON_PREFIX: &str = "maintenance window ";

/// A set of weekdays.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Weekdays(u8);

/// The config spellings, Monday first (chrono's `num_days_from_monday` order).
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Weekdays {
    /// Every day.
    pub const ALL: Weekdays = Weekdays(0b111_1111);
    /// Monday to Friday.
    pub const WORKDAYS: Weekdays = Weekdays(0b001_1111);
    /// Saturday and Sunday.
    pub const WEEKEND: Weekdays = Weekdays(0b110_0000);

    /// The empty set.
    pub const fn none() -> Weekdays {
        Weekdays(0)
    }

    /// The set with `day` added.
    pub fn with(self, day: chrono::Weekday) -> Weekdays {
        Weekdays(self.0 | 1 << day.num_days_from_monday())
    }

    pub fn contains(self, day: chrono::Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses one config day name (`"mon"` .. `"sun"`).
    pub fn day(name: &str) -> Option<chrono::Weekday> {
        let i = DAY_NAMES.iter().position(|d| *d == name)?;
        let days = [
            chrono::Weekday::Mon,
            chrono::Weekday::Tue,
            chrono::Weekday::Wed,
            chrono::Weekday::Thu,
            chrono::Weekday::Fri,
            chrono::Weekday::Sat,
            chrono::Weekday::Sun,
        ];
        Some(days[i])
    }
}

impl fmt::Display for Weekdays {
    /// `"daily"`, or the config list form: `["mon", "wed"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Weekdays::ALL {
            return f.write_str("\"daily\"");
        }
        let names: Vec<String> = DAY_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| format!("\"{n}\""))
            .collect();
        write!(f, "[{}]", names.join(", "))
    }
}

impl fmt::Debug for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One session a window names: `"provider/session"` in the config.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub provider: String,
    pub session: String,
}

/// One resolved `[[maintenance]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Unique among windows; appears in the pause reason and in logs.
    pub name: String,
    /// Days on which the window starts.
    pub weekdays: Weekdays,
    /// Local start time in `timezone`.
    pub start: NaiveTime,
    /// Elapsed time from start to end; 0 < duration <= [`MAX_DURATION`].
    pub duration: Duration,
    pub timezone: Tz,
    /// Scope: every session of these providers ...
    pub providers: Vec<String>,
    /// ... and these sessions. Both empty: every session.
    pub sessions: Vec<SessionRef>,
}

/// One occurrence of a window: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Occurrence {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// Whether the window's scope includes `provider/session`.
    pub fn applies_to(&self, provider: &str, session: &str) -> bool {
        (self.providers.is_empty() && self.sessions.is_empty())
            || self.providers.iter().any(|p| p == provider)
            || self
                .sessions
                .iter()
                .any(|s| s.provider == provider && s.session == session)
    }

    /// When the window starts on local date `date`, if `date` is one of its
    /// weekdays.
    pub fn start_on(&self, date: NaiveDate) -> Option<Timestamp> {
        if !self.weekdays.contains(date.weekday()) {
            return None;
        }
        let at = local_to_utc(&self.timezone, date.and_time(self.start))?;
        Some(Timestamp::from_millis(at.timestamp_millis()))
    }

    /// The occurrence covering `at` (`start <= at < end`). When occurrences
    /// overlap (a duration longer than the gap between two starts), the one
    /// that ends last.
    pub fn covering(&self, at: Timestamp) -> Option<Occurrence> {
        let today = self.local_date(at)?;
        // An occurrence that covers `at` started at most `duration` before
        // it, plus a day for a start moved by a clock change.
        let back = self.duration.as_secs().div_ceil(86_400) + 1;
        let back = i64::try_from(back).ok()?;
        (-1..=back)
            .filter_map(|d| today.checked_sub_signed(chrono::TimeDelta::days(d)))
            .filter_map(|date| self.start_on(date))
            .map(|start| Occurrence {
                start,
                end: start.plus(self.duration),
            })
            .filter(|o| o.start <= at && at < o.end)
            .max_by_key(|o| o.end)
    }

    /// The first start strictly after `at` (None only for an empty weekday
    /// set or a time outside chrono's range).
    pub fn next_start_after(&self, at: Timestamp) -> Option<Timestamp> {
        let today = self.local_date(at)?;
        // Starts on later local dates are later instants; a week and a day
        // covers every weekday set and a start moved by a clock change.
        (-1..=8)
            .filter_map(|d| today.checked_add_signed(chrono::TimeDelta::days(d)))
            .filter_map(|date| self.start_on(date))
            .filter(|start| *start > at)
            .min()
    }

    fn local_date(&self, at: Timestamp) -> Option<NaiveDate> {
        let utc = DateTime::<Utc>::from_timestamp_millis(at.as_millis())?;
        Some(utc.with_timezone(&self.timezone).date_naive())
    }
}

/// A local wall-clock time as an instant, by the rules in the module doc.
fn local_to_utc(tz: &Tz, local: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        // Clocks fell back: the first of the two.
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        // Clocks jumped forward over `local`: read it with the offset in
        // force before the jump, which moves it forward by the jump's length.
        // The offset a day earlier is that offset: no zone changes its clocks
        // twice within a day.
        LocalResult::None => {
            let before = local.checked_sub_signed(chrono::TimeDelta::days(1))?;
            let offset = match tz.from_local_datetime(&before) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.offset().fix(),
                LocalResult::None => return None,
            };
            let utc = local.checked_sub_signed(chrono::TimeDelta::seconds(i64::from(
                offset.local_minus_utc(),
            )))?;
            Some(Utc.from_utc_datetime(&utc))
        }
    }
}

/// One window occurrence that covers a session now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active<'a> {
    pub window: &'a str,
    pub occurrence: Occurrence,
}

/// Every window occurrence covering `provider/session` at `at`, in config
/// order.
pub fn active<'a>(
    windows: &'a [Window],
    provider: &str,
    session: &str,
    at: Timestamp,
) -> Vec<Active<'a>> {
    windows
        .iter()
        .filter(|w| w.applies_to(provider, session))
        .filter_map(|w| {
            w.covering(at).map(|occurrence| Active {
                window: &w.name,
                occurrence,
            })
        })
        .collect()
}

/// Which of `active` decides the pause: the one that ends last (the session
/// stays paused until no window covers it; a later start re-pauses it).
pub fn last_ending<'a, 'b>(active: &'b [Active<'a>]) -> Option<&'b Active<'a>> {
    active.iter().max_by_key(|a| a.occurrence.end)
}

/// The first start of any window strictly after `at`.
pub fn next_start(windows: &[Window], at: Timestamp) -> Option<Timestamp> {
    windows.iter().filter_map(|w| w.next_start_after(at)).min()
}

/// The window name in a pause reason written by [`pause_reason`].
pub fn window_of_reason(reason: &str) -> Option<&str> {
    reason.strip_prefix(REASON_PREFIX)
}

/// The pause reason for window `name`.
pub fn pause_reason(name: &str) -> String {
    format!("{REASON_PREFIX}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(rfc3339: &str) -> Timestamp {
        let t = DateTime::parse_from_rfc3339(rfc3339).expect("test time");
        Timestamp::from_millis(t.timestamp_millis())
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("time")
    }

    fn window(days: Weekdays, start: NaiveTime, dur: &str, tz: &str) -> Window {
        Window {
            name: "w".into(),
            weekdays: days,
            start,
            duration: humantime::parse_duration(dur).expect("duration"),
            timezone: tz.parse().expect("tz"),
            providers: vec![],
            sessions: vec![],
        }
    }

    fn occ(start: &str, end: &str) -> Option<Occurrence> {
        Some(Occurrence {
            start: ts(start),
            end: ts(end),
        })
    }

    #[test]
    fn daily_utc_window_covers_exactly_its_half_open_interval() {
        let w = window(Weekdays::ALL, hm(2, 0), "1h", "UTC");
        let o = occ("2027-01-15T02:00:00Z", "2027-01-15T03:00:00Z");
        assert_eq!(w.covering(ts("2027-01-15T01:59:59.999Z")), None);
        assert_eq!(w.covering(ts("2027-01-15T02:00:00Z")), o);
        assert_eq!(w.covering(ts("2027-01-15T02:59:59.999Z")), o);
        assert_eq!(w.covering(ts("2027-01-15T03:00:00Z")), None);
        assert_eq!(
            w.next_start_after(ts("2027-01-15T01:00:00Z")),
            Some(ts("2027-01-15T02:00:00Z"))
        );
        // Strictly after: at a start, the next one is tomorrow's.
        assert_eq!(
            w.next_start_after(ts("2027-01-15T02:00:00Z")),
            Some(ts("2027-01-16T02:00:00Z"))
        );
    }

    #[test]
    fn window_crossing_midnight_belongs_to_the_day_it_starts() {
        // Fridays 23:00 for 2h: Fri 23:00 .. Sat 01:00. 2027-01-15 is a Friday.
        let fri = Weekdays::none().with(chrono::Weekday::Fri);
        let w = window(fri, hm(23, 0), "2h", "UTC");
        let o = occ("2027-01-15T23:00:00Z", "2027-01-16T01:00:00Z");
        assert_eq!(w.covering(ts("2027-01-15T23:30:00Z")), o);
        assert_eq!(
            w.covering(ts("2027-01-16T00:30:00Z")),
            o,
            "Saturday morning"
        );
        assert_eq!(w.covering(ts("2027-01-16T01:00:00Z")), None);
        // Thursday night is not covered: Thursday is not listed.
        assert_eq!(w.covering(ts("2027-01-15T00:30:00Z")), None);
        assert_eq!(
            w.next_start_after(ts("2027-01-16T00:30:00Z")),
            Some(ts("2027-01-22T23:00:00Z"))
        );
    }

    #[test]
    fn weekday_lists_select_days_and_next_start_skips_to_the_next_listed_day() {
        let days = Weekdays::none()
            .with(chrono::Weekday::Mon)
            .with(chrono::Weekday::Wed);
        let w = window(days, hm(4, 0), "30m", "UTC");
        // 2027-01-18 Mon, 19 Tue, 20 Wed, 21 Thu.
        assert!(w.covering(ts("2027-01-18T04:10:00Z")).is_some());
        assert!(w.covering(ts("2027-01-19T04:10:00Z")).is_none());
        assert!(w.covering(ts("2027-01-20T04:10:00Z")).is_some());
        assert!(w.covering(ts("2027-01-21T04:10:00Z")).is_none());
        assert_eq!(
            w.next_start_after(ts("2027-01-18T05:00:00Z")),
            Some(ts("2027-01-20T04:00:00Z"))
        );
        assert_eq!(
            w.next_start_after(ts("2027-01-20T05:00:00Z")),
            Some(ts("2027-01-25T04:00:00Z"))
        );
        // Every weekday set, every day of a week: next start within 8 days.
        for bits in 1u8..128 {
            let w = window(Weekdays(bits), hm(4, 0), "30m", "UTC");
            let start = ts("2027-01-18T00:00:00Z");
            let next = w.next_start_after(start).expect("some start");
            assert!(
                next.since(start) <= Duration::from_secs(7 * 86400),
                "{bits:07b}"
            );
            assert!(
                w.weekdays.contains(
                    DateTime::<Utc>::from_timestamp_millis(next.as_millis())
                        .expect("t")
                        .weekday()
                )
            );
        }
        assert_eq!(
            window(Weekdays::none(), hm(4, 0), "1h", "UTC").next_start_after(start_of_2027()),
            None
        );
    }

    fn start_of_2027() -> Timestamp {
        ts("2027-01-01T00:00:00Z")
    }

    #[test]
    fn time_zone_offsets_apply_in_winter_and_summer() {
        let w = window(Weekdays::ALL, hm(2, 0), "1h", "Europe/Berlin");
        // CET (+01:00) in January, CEST (+02:00) in July.
        assert_eq!(
            w.covering(ts("2027-01-15T01:30:00Z")),
            occ("2027-01-15T01:00:00Z", "2027-01-15T02:00:00Z")
        );
        assert_eq!(
            w.covering(ts("2027-07-15T00:30:00Z")),
            occ("2027-07-15T00:00:00Z", "2027-07-15T01:00:00Z")
        );
        let ny = window(Weekdays::ALL, hm(22, 0), "4h", "America/New_York");
        // 22:00 EST on Jan 15 is 03:00Z on Jan 16; the local date of 05:00Z
        // (00:00 EST) is already Jan 16, yet Jan 15's window covers it.
        assert_eq!(
            ny.covering(ts("2027-01-16T05:00:00Z")),
            occ("2027-01-16T03:00:00Z", "2027-01-16T07:00:00Z")
        );
    }

    #[test]
    fn a_start_the_clocks_skip_moves_forward_by_the_jump() {
        // Europe/Berlin springs forward on 2027-03-28: 02:00 CET -> 03:00 CEST.
        let w = window(Weekdays::ALL, hm(2, 30), "1h", "Europe/Berlin");
        // 02:30 does not exist; it becomes 03:30 CEST = 01:30Z.
        assert_eq!(
            w.start_on(NaiveDate::from_ymd_opt(2027, 3, 28).expect("date")),
            Some(ts("2027-03-28T01:30:00Z"))
        );
        assert_eq!(
            w.covering(ts("2027-03-28T02:00:00Z")),
            occ("2027-03-28T01:30:00Z", "2027-03-28T02:30:00Z")
        );
        // The days around it are ordinary.
        assert_eq!(
            w.start_on(NaiveDate::from_ymd_opt(2027, 3, 27).expect("date")),
            Some(ts("2027-03-27T01:30:00Z"))
        );
        assert_eq!(
            w.start_on(NaiveDate::from_ymd_opt(2027, 3, 29).expect("date")),
            Some(ts("2027-03-29T00:30:00Z"))
        );
        // A window that starts right at the jump.
        let at_jump = window(Weekdays::ALL, hm(2, 0), "1h", "Europe/Berlin");
        assert_eq!(
            at_jump.start_on(NaiveDate::from_ymd_opt(2027, 3, 28).expect("date")),
            Some(ts("2027-03-28T01:00:00Z"))
        );
        // next_start_after walks over the jump in order.
        assert_eq!(
            w.next_start_after(ts("2027-03-27T12:00:00Z")),
            Some(ts("2027-03-28T01:30:00Z"))
        );
        assert_eq!(
            w.next_start_after(ts("2027-03-28T01:30:00Z")),
            Some(ts("2027-03-29T00:30:00Z"))
        );
    }

    #[test]
    fn a_start_the_clocks_repeat_is_the_first_and_duration_is_elapsed_time() {
        // Europe/Berlin falls back on 2027-10-31: 03:00 CEST -> 02:00 CET.
        let w = window(Weekdays::ALL, hm(2, 30), "1h", "Europe/Berlin");
        // 02:30 happens twice: 00:30Z (CEST) and 01:30Z (CET); the first counts.
        assert_eq!(
            w.covering(ts("2027-10-31T01:00:00Z")),
            occ("2027-10-31T00:30:00Z", "2027-10-31T01:30:00Z")
        );
        // The second 02:30 is not a second start.
        assert_eq!(w.covering(ts("2027-10-31T01:45:00Z")), None);
        // A window across the change lasts its elapsed duration: 01:00 local
        // + 3h ends at 03:00 CET (02:00Z), which is only 02:00 later on the wall.
        let across = window(Weekdays::ALL, hm(1, 0), "3h", "Europe/Berlin");
        assert_eq!(
            across.covering(ts("2027-10-31T01:00:00Z")),
            occ("2027-10-30T23:00:00Z", "2027-10-31T02:00:00Z")
        );
        // In spring the same window ends at 05:00 CEST wall time.
        assert_eq!(
            across.covering(ts("2027-03-28T01:00:00Z")),
            occ("2027-03-28T00:00:00Z", "2027-03-28T03:00:00Z")
        );
    }

    #[test]
    fn overlapping_occurrences_report_the_one_ending_last() {
        // Daily for 25h: always active, each day's occurrence overlaps the next.
        let w = window(Weekdays::ALL, hm(0, 0), "25h", "UTC");
        assert_eq!(
            w.covering(ts("2027-01-15T00:30:00Z")),
            occ("2027-01-15T00:00:00Z", "2027-01-16T01:00:00Z")
        );
        // A week-long window starting Mondays covers the following Sunday.
        let mon = Weekdays::none().with(chrono::Weekday::Mon);
        let long = window(mon, hm(0, 0), "7d", "UTC");
        assert_eq!(
            long.covering(ts("2027-01-24T23:59:00Z")),
            occ("2027-01-18T00:00:00Z", "2027-01-25T00:00:00Z")
        );
    }

    #[test]
    fn scope_all_providers_or_sessions() {
        let mut w = window(Weekdays::ALL, hm(0, 0), "1h", "UTC");
        assert!(w.applies_to("any", "thing"));
        w.providers = vec!["waha".into()];
        assert!(w.applies_to("waha", "s1"));
        assert!(!w.applies_to("green", "1101"));
        w.sessions = vec![SessionRef {
            provider: "green".into(),
            session: "1101".into(),
        }];
        assert!(w.applies_to("green", "1101"));
        assert!(!w.applies_to("green", "1102"));
        w.providers.clear();
        assert!(!w.applies_to("waha", "s1"));
    }

    #[test]
    fn active_and_next_start_over_several_windows() {
        let mut a = window(Weekdays::ALL, hm(2, 0), "1h", "UTC");
        a.name = "a".into();
        let mut b = window(Weekdays::ALL, hm(2, 30), "1h", "UTC");
        b.name = "b".into();
        b.providers = vec!["other".into()];
        let windows = vec![a, b];
        let at = ts("2027-01-15T02:45:00Z");
        let act = active(&windows, "waha", "s1", at);
        assert_eq!(act.len(), 1);
        assert_eq!(act[0].window, "a");
        let both = active(&windows, "other", "s1", at);
        assert_eq!(both.len(), 2);
        assert_eq!(last_ending(&both).map(|a| a.window), Some("b"));
        assert_eq!(
            next_start(&windows, ts("2027-01-15T02:10:00Z")),
            Some(ts("2027-01-15T02:30:00Z"))
        );
        assert_eq!(next_start(&[], at), None);
        assert_eq!(window_of_reason(&pause_reason("nightly")), Some("nightly"));
        assert_eq!(window_of_reason("operator"), None);
    }

    #[test]
    fn weekday_names_and_display() {
        assert_eq!(Weekdays::day("sun"), Some(chrono::Weekday::Sun));
        assert_eq!(Weekdays::day("Sun"), None);
        assert_eq!(Weekdays::ALL.to_string(), "\"daily\"");
        assert_eq!(
            Weekdays::WORKDAYS.to_string(),
            r#"["mon", "tue", "wed", "thu", "fri"]"#
        );
        assert_eq!(Weekdays::WEEKEND.to_string(), r#"["sat", "sun"]"#);
        assert!(Weekdays::none().is_empty());
    }
}
