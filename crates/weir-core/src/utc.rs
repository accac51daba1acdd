//! A time as the calendar in UTC says it, for the few places that write one (audit lines,
//! request signatures), without a date-time dependency.

use std::time::SystemTime;

/// A moment in UTC, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Utc {
    /// `at` in UTC (times before 1970 count as 1970-01-01).
    pub fn of(at: SystemTime) -> Self {
        let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let (days, secs) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u32,
            day: day as u32,
            hour: (secs / 3600) as u32,
            minute: (secs % 3600 / 60) as u32,
            second: (secs % 60) as u32,
            millis: since.subsec_millis(),
        }
    }

    pub fn now() -> Self {
        Self::of(SystemTime::now())
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn rfc3339_millis(&self) -> String {
        let Utc { year, month, day, hour, minute, second, millis } = self;
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
    }

    /// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic, as AWS Signature Version 4 writes it).
    pub fn basic(&self) -> String {
        let Utc { year, month, day, hour, minute, second, .. } = self;
        format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn calendar_dates_come_out_right_across_leap_years_and_centuries() {
        let at = |secs: u64, millis: u64| Utc::of(SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis));
        assert_eq!(at(0, 0).basic(), "19700101T000000Z");
        assert_eq!(at(951_782_400, 0).basic(), "20000229T000000Z");
        assert_eq!(at(1_440_938_160, 7).rfc3339_millis(), "2015-08-30T12:36:00.007Z");
        assert_eq!(at(4_102_444_799, 999).rfc3339_millis(), "2099-12-31T23:59:59.999Z");
    }
}
