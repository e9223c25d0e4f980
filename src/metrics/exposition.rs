//! Reading a text exposition back, as Prometheus would: its samples, and the
//! check of it against the metrics contract ([`super::FAMILIES`]). One
//! check for the unit tests (the registry's own encoding) and the
//! integration tests (a real scrape of `/metrics`), so the two cannot drift.

use std::collections::BTreeMap;

use super::FAMILIES;

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: String,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// The samples of `text`, for the subset the text encoder writes for our
/// families (label values without quotes, commas or escapes). A line that
/// is not of that form is left out.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .strip_suffix('}')?
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=')?;
                            Some((k.to_owned(), v.trim_matches('"').to_owned()))
                        })
                        .collect::<Option<BTreeMap<_, _>>>()?;
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            Some(Sample {
                name: name.to_owned(),
                labels,
                value: value.to_owned(),
            })
        })
        .collect()
}

/// What in `text` breaks the contract: a family missing, of another type,
/// without help, without samples or with other label names; a
/// `wa_watchdog_` family that is not in the contract. Empty when it holds.
/// `process_*` families are only expected on Linux.
pub fn contract_violations(text: &str) -> Vec<String> {
    let all = samples(text);
    let mut wrong = Vec::new();
    for &(family, kind, labels) in FAMILIES {
        if family.starts_with("process_") && !cfg!(target_os = "linux") {
            continue;
        }
        if !text.contains(&format!("\n# TYPE {family} {kind}\n")) {
            wrong.push(format!("no `# TYPE {family} {kind}`"));
            continue;
        }
        if !text.contains(&format!("# HELP {family} ")) {
            wrong.push(format!("{family} has no help"));
        }
        let sample = if kind == "histogram" {
            format!("{family}_bucket")
        } else {
            family.to_owned()
        };
        let mut want = labels.to_vec();
        want.sort_unstable();
        let of: Vec<&Sample> = all.iter().filter(|s| s.name == sample).collect();
        if of.is_empty() {
            wrong.push(format!("no {sample} samples"));
        }
        for s in of {
            // BTreeMap keys come sorted.
            let got: Vec<&str> = s
                .labels
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "le")
                .collect();
            if got != want {
                wrong.push(format!("{sample}: labels {got:?}, want {want:?}"));
            }
        }
    }
    for line in text
        .lines()
        .filter(|l| l.starts_with("# TYPE wa_watchdog_"))
    {
        let name = line.split(' ').nth(2).unwrap_or_default();
        if !FAMILIES.iter().any(|(f, _, _)| *f == name) {
            wrong.push(format!("{name} is not in the contract table"));
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels_and_odd_lines_left_out() {
        let text = "# HELP x y\n# TYPE x gauge\nx{a=\"1\",b=\"two\"} 3\ny 4.5\nbroken{a=\"1\" 2\n";
        let s = samples(text);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].name, "x");
        assert_eq!(s[0].label("b"), Some("two"));
        assert_eq!(s[0].value, "3");
        assert_eq!((s[1].name.as_str(), s[1].value.as_str()), ("y", "4.5"));
        assert!(s[1].labels.is_empty());
    }

    #[test]
    fn an_empty_exposition_breaks_the_contract_everywhere() {
        let wrong = contract_violations("");
        assert!(
            wrong.iter().any(|w| w.contains("wa_watchdog_canary_total")),
            "{wrong:?}"
        );
        let stray = "# TYPE wa_watchdog_nonsense gauge\nwa_watchdog_nonsense 1\n";
        assert!(
            contract_violations(stray)
                .iter()
                .any(|w| w == "wa_watchdog_nonsense is not in the contract table")
        );
    }
}
