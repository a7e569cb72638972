//! Port selections such as `80,443,8000-8999` (OBI's `open_ports` syntax).

use std::fmt;
use std::ops::RangeInclusive;

/// A set of TCP ports given as a comma-separated list of ports and ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSelection {
    ranges: Vec<RangeInclusive<u16>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSelectionError {
    pub value: String,
    pub reason: &'static str,
}

impl fmt::Display for PortSelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid port selection {:?}: {} (expected e.g. 8080 or 80,443,8000-8999)",
            self.value, self.reason
        )
    }
}

impl std::error::Error for PortSelectionError {}

fn parse_port(text: &str, whole: &str) -> Result<u16, PortSelectionError> {
    let err = |reason| PortSelectionError {
        value: whole.to_owned(),
        reason,
    };
    let port: u16 = text
        .trim()
        .parse()
        .map_err(|_| err("not a port number between 1 and 65535"))?;
    if port == 0 {
        return Err(err("port 0 cannot be listened on"));
    }
    Ok(port)
}

impl PortSelection {
    pub fn parse(text: &str) -> Result<Self, PortSelectionError> {
        let mut ranges = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(PortSelectionError {
                    value: text.to_owned(),
                    reason: "empty entry",
                });
            }
            let range = match item.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (parse_port(low, text)?, parse_port(high, text)?);
                    if low > high {
                        return Err(PortSelectionError {
                            value: text.to_owned(),
                            reason: "range start is above its end",
                        });
                    }
                    low..=high
                }
                None => {
                    let port = parse_port(item, text)?;
                    port..=port
                }
            };
            ranges.push(range);
        }
        Ok(Self { ranges })
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&port))
    }

    /// How many ports the selection holds (ranges may overlap: an upper bound).
    pub fn len(&self) -> usize {
        self.ranges
            .iter()
            .map(|r| usize::from(*r.end() - *r.start()) + 1)
            .sum()
    }

    /// Every port of the selection, in its order (a port of overlapping ranges more than once).
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl fmt::Display for PortSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|r| {
                if r.start() == r.end() {
                    r.start().to_string()
                } else {
                    format!("{}-{}", r.start(), r.end())
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_counts_and_lists_its_ports() {
        let Ok(selection) = PortSelection::parse("80,8000-8002") else {
            panic!("valid selection");
        };
        assert_eq!(selection.len(), 4);
        assert_eq!(
            selection.ports().collect::<Vec<_>>(),
            [80, 8000, 8001, 8002]
        );
        let Ok(all) = PortSelection::parse("1-65535") else {
            panic!("valid selection");
        };
        assert_eq!(all.len(), 65535);
    }

    #[test]
    fn parses_lists_and_ranges() {
        let sel = PortSelection::parse("5678, 8000-8999,80").unwrap_or_default();
        assert!(sel.contains(5678) && sel.contains(8000) && sel.contains(8999) && sel.contains(80));
        assert!(!sel.contains(9000) && !sel.contains(81));
        assert_eq!(sel.to_string(), "5678,8000-8999,80");
    }

    #[test]
    fn rejects_bad_values_naming_them() {
        for bad in ["", "abc", "80,", "0", "70000", "9-3", "1-2-3"] {
            let err = PortSelection::parse(bad).err();
            assert!(err.is_some(), "{bad:?} accepted");
            if let Some(e) = err {
                assert!(e.to_string().contains(&format!("{bad:?}")));
            }
        }
    }
}
