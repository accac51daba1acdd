//! MQTT topic names and filters: what a name and a filter may be, whether a filter matches a
//! name, whether one filter is within another (every name the inner one matches, the outer
//! one matches too: how a sidecar decides that a subscription is no wider than what a policy
//! allows) and whether two overlap (some name matches both: how a deny rule reaches a
//! subscription).
//!
//! The spec's rules: levels are separated by `/` (empty levels count); `+` matches exactly one
//! level and `#` any number of levels (zero included, so `a/#` matches `a`), each standing
//! alone in its level, `#` last; a name starting with `$` (`$SYS/...`) is not matched by a
//! filter whose first level is a wildcard.

/// Why a topic filter is not one.
pub fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("an empty topic filter");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("a topic filter with `#` not last or not alone in its level");
        }
        if level.contains('+') && *level != "+" {
            return Err("a topic filter with `+` not alone in its level");
        }
    }
    Ok(())
}

/// Why a topic name is not one.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("an empty topic name");
    }
    if name.contains(['+', '#']) {
        return Err("a wildcard in a topic name");
    }
    Ok(())
}

/// Whether `filter` matches the topic `name`.
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if names.next().is_none() {
                    return false;
                }
            }
            literal => {
                if names.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    names.next().is_none()
}

/// Whether every topic name `inner` matches, `outer` matches too: a subscription to `inner`
/// is within what `outer` allows. Both must be valid filters ([`check_filter`]).
pub fn within(outer: &str, inner: &str) -> bool {
    // `$` topics: a wildcard first level of `outer` covers none of them, so an `inner` that
    // can match one (starting with `$`) needs `outer` to start with the same literal.
    let outer_levels: Vec<&str> = outer.split('/').collect();
    let inner_levels: Vec<&str> = inner.split('/').collect();
    if inner.starts_with('$') && outer.starts_with(['+', '#']) {
        return false;
    }
    for (i, level) in outer_levels.iter().enumerate() {
        let Some(theirs) = inner_levels.get(i) else {
            // `inner` is shorter: it matches names of exactly its length, which `outer`
            // matches only if what remains of it is a `#` (matching zero levels).
            return *level == "#" && i + 1 == outer_levels.len();
        };
        match (*level, *theirs) {
            ("#", _) => return true,
            // A `#` of `inner` matches any depth, which only a `#` covers.
            (_, "#") => return false,
            ("+", _) => {}
            (_, "+") => return false,
            (mine, theirs) if mine != theirs => return false,
            _ => {}
        }
    }
    inner_levels.len() == outer_levels.len()
}

/// Whether some topic name matches both filters: a subscription to `a` could receive what a
/// rule about `b` speaks of (how a deny rule reaches a subscription wider than it). Both must
/// be valid filters.
pub fn overlaps(a: &str, b: &str) -> bool {
    // A name matched by a filter starting with a wildcard does not start with `$`; one
    // starting with a literal `$…` level matches only names that do.
    let wildcard_first = |f: &str| f.starts_with(['+', '#']);
    if (a.starts_with('$') && wildcard_first(b)) || (b.starts_with('$') && wildcard_first(a)) {
        return false;
    }
    let (mut a_levels, mut b_levels) = (a.split('/'), b.split('/'));
    loop {
        match (a_levels.next(), b_levels.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            // One is longer: only a `#` (matching zero levels) where the other ends lets a
            // name of the shorter's length match both.
            (None, Some(level)) | (Some(level), None) => {
                return level == "#";
            }
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(x), Some(y)) if x != y => return false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_names_as_the_spec_says() {
        for (filter, name, expected) in [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
            ("sport/#", "sport", true),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/broker/load", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/broker/load", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
        ] {
            assert_eq!(matches(filter, name), expected, "{filter} ~ {name}");
        }
    }

    #[test]
    fn a_filter_is_within_another_only_when_every_name_it_matches_the_other_does() {
        for (outer, inner, expected) in [
            ("sensors/#", "sensors/+/temp", true),
            ("sensors/#", "sensors", true),
            ("sensors/#", "#", false),
            ("sensors/+/temp", "sensors/+/temp", true),
            ("sensors/+/temp", "sensors/7/temp", true),
            ("sensors/+/temp", "sensors/#", false),
            ("sensors/+/temp", "sensors/+/+", false),
            ("sensors/7/temp", "sensors/+/temp", false),
            ("+/temp", "sensors/temp", true),
            ("#", "a/b/#", true),
            ("#", "$SYS/#", false),
            ("+/#", "$SYS/x", false),
            ("$SYS/#", "$SYS/broker/+", true),
            ("a/+", "a", false),
            ("a/+/#", "a/b", true),
            ("a", "a/#", false),
        ] {
            assert_eq!(within(outer, inner), expected, "{inner} within {outer}");
        }
    }

    #[test]
    fn within_agrees_with_matching_on_every_small_name() {
        // Names of up to three levels over a small alphabet, `$` included: `within` must
        // never say yes where a name matched by the inner filter escapes the outer one.
        let levels = ["a", "b", "", "$x"];
        let mut names = Vec::new();
        for n in 1..=3 {
            let mut current: Vec<String> = vec![String::new()];
            for depth in 0..n {
                current = current
                    .iter()
                    .flat_map(|prefix| {
                        levels.iter().filter(move |l| depth == 0 || !l.starts_with('$')).map(move |l| {
                            if depth == 0 {
                                (*l).to_owned()
                            } else {
                                format!("{prefix}/{l}")
                            }
                        })
                    })
                    .collect();
            }
            names.extend(current);
        }
        let filters = ["#", "+", "a", "a/#", "a/+", "+/b", "+/+", "a/+/#", "+/#", "$x/#", "$x/+", "a/b", "/+", "+/+/+"];
        for outer in filters {
            for inner in filters {
                let escapes = names.iter().any(|n| matches(inner, n) && !matches(outer, n));
                if within(outer, inner) {
                    assert!(!escapes, "{inner} said within {outer}, but a name escapes");
                }
            }
        }
    }

    #[test]
    fn filters_overlap_exactly_when_some_small_name_matches_both() {
        let levels = ["a", "b", "", "$x"];
        let mut names: Vec<String> = Vec::new();
        let mut current: Vec<String> = levels.iter().map(|l| (*l).to_owned()).collect();
        for _ in 0..4 {
            names.extend(current.iter().cloned());
            current = current
                .iter()
                .flat_map(|p| levels.iter().filter(|l| !l.starts_with('$')).map(move |l| format!("{p}/{l}")))
                .collect();
        }
        let filters =
            ["#", "+", "a", "a/#", "a/+", "+/b", "+/+", "a/+/#", "+/#", "$x/#", "$x/+", "a/b", "/+", "+/+/+", "b/#"];
        for a in filters {
            for b in filters {
                let shared = names.iter().any(|n| matches(a, n) && matches(b, n));
                assert_eq!(overlaps(a, b), shared, "{a} and {b}");
            }
        }
    }

    #[test]
    fn bad_filters_and_names_are_named() {
        assert_eq!(check_filter("a/#/b"), Err("a topic filter with `#` not last or not alone in its level"));
        assert_eq!(check_filter("a/b#"), Err("a topic filter with `#` not last or not alone in its level"));
        assert_eq!(check_filter("a+/b"), Err("a topic filter with `+` not alone in its level"));
        assert_eq!(check_filter(""), Err("an empty topic filter"));
        assert!(check_filter("+/a/#").is_ok() && check_filter("/").is_ok());
        assert_eq!(check_name("a/+"), Err("a wildcard in a topic name"));
        assert_eq!(check_name(""), Err("an empty topic name"));
    }
}
