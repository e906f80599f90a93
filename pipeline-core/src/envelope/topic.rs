//! Glob patterns over dot-separated topics.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A compiled topic pattern: `*` and `?` inside a segment, `**` for any number of
/// whole segments (see the [module docs](super#topic-patterns)).
///
/// # Examples
///
/// ```
/// use pipeline_core::envelope::TopicPattern;
///
/// let p = TopicPattern::new("orders.*.created").unwrap();
/// assert!(p.matches("orders.eu.created"));
/// assert!(!p.matches("orders.created"));
/// assert!(TopicPattern::new("orders..created").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    source: Arc<str>,
    segments: Arc<[Segment]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    /// No wildcard: compared as is.
    Literal(Box<str>),
    /// Has `*` or `?`.
    Glob(Box<str>),
    /// `**`: any number of segments.
    AnyDepth,
}

/// Why a topic pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicPatternError {
    /// The pattern is empty.
    #[error("a topic pattern cannot be empty")]
    Empty,
    /// Two dots in a row, or a dot at either end.
    #[error("topic pattern {0:?} has an empty segment")]
    EmptySegment(String),
    /// `**` mixed with other characters in one segment.
    #[error("topic pattern {0:?}: `**` must be a whole segment")]
    PartialAnyDepth(String),
}

impl TopicPattern {
    /// Compiles `pattern`.
    ///
    /// # Errors
    ///
    /// [`TopicPatternError`] for an empty pattern, an empty segment, or `**` that is not
    /// a whole segment.
    pub fn new(pattern: &str) -> Result<Self, TopicPatternError> {
        if pattern.is_empty() {
            return Err(TopicPatternError::Empty);
        }
        let mut segments: Vec<Segment> = Vec::new();
        for part in pattern.split('.') {
            let segment = match part {
                "" => return Err(TopicPatternError::EmptySegment(pattern.to_owned())),
                "**" => Segment::AnyDepth,
                _ if part.contains("**") => {
                    return Err(TopicPatternError::PartialAnyDepth(pattern.to_owned()));
                }
                _ if part.contains(['*', '?']) => Segment::Glob(part.into()),
                _ => Segment::Literal(part.into()),
            };
            // `**.**` means the same as `**` and would only slow matching down.
            if !(segment == Segment::AnyDepth && segments.last() == Some(&Segment::AnyDepth)) {
                segments.push(segment);
            }
        }
        Ok(TopicPattern {
            source: pattern.into(),
            segments: segments.into(),
        })
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        matches_from(&self.segments, Some(topic))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// `rest` is the part of the topic not matched yet: `None` once every segment is used.
fn matches_from(segments: &[Segment], rest: Option<&str>) -> bool {
    let Some((segment, more)) = segments.split_first() else {
        return rest.is_none();
    };
    if *segment == Segment::AnyDepth {
        // Either `**` stands for no more segments, or it takes one and stays.
        return matches_from(more, rest)
            || rest.is_some_and(|r| matches_from(segments, split_segment(r).1));
    }
    let Some(rest) = rest else {
        return false;
    };
    let (head, tail) = split_segment(rest);
    let head_matches = match segment {
        Segment::Literal(literal) => **literal == *head,
        Segment::Glob(glob) => glob_matches(glob, head),
        Segment::AnyDepth => unreachable!("handled above"),
    };
    head_matches && matches_from(more, tail)
}

fn split_segment(topic: &str) -> (&str, Option<&str>) {
    match topic.split_once('.') {
        Some((head, tail)) => (head, Some(tail)),
        None => (topic, None),
    }
}

/// `*` (any run of characters) and `?` (one character) within one segment. Greedy
/// with one backtrack point, so linear in practice and never exponential.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (mut p, mut t) = (pattern, text);
    // After a `*`: the pattern after it, and where in the text it was last tried.
    let mut star: Option<(&str, &str)> = None;
    loop {
        let mut pattern_chars = p.chars();
        match pattern_chars.next() {
            Some('*') => {
                p = pattern_chars.as_str();
                star = Some((p, t));
                continue;
            }
            Some(c) => {
                let mut text_chars = t.chars();
                if text_chars.next().is_some_and(|x| c == '?' || c == x) {
                    p = pattern_chars.as_str();
                    t = text_chars.as_str();
                    continue;
                }
            }
            None if t.is_empty() => return true,
            None => {}
        }
        // Mismatch: let the last `*` swallow one more character, if it can.
        let Some((after_star, tried)) = star else {
            return false;
        };
        let mut tried_chars = tried.chars();
        if tried_chars.next().is_none() {
            return false;
        }
        star = Some((after_star, tried_chars.as_str()));
        p = after_star;
        t = tried_chars.as_str();
    }
}

impl FromStr for TopicPattern {
    type Err = TopicPatternError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        TopicPattern::new(pattern)
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(all(test, not(pipeline_loom)))]
mod tests {
    use super::*;

    fn check(pattern: &str, yes: &[&str], no: &[&str]) {
        let p = TopicPattern::new(pattern).unwrap();
        for topic in yes {
            assert!(p.matches(topic), "{pattern} should match {topic}");
        }
        for topic in no {
            assert!(!p.matches(topic), "{pattern} should not match {topic}");
        }
    }

    #[test]
    fn literal() {
        check(
            "orders.created",
            &["orders.created"],
            &["orders", "orders.created.x", "orders.create"],
        );
    }

    #[test]
    fn star_within_one_segment() {
        check(
            "orders.*",
            &["orders.created", "orders.x"],
            &["orders", "orders.eu.created", "order.created"],
        );
        check(
            "*.error",
            &["db.error", "x.error"],
            &["db.pool.error", "db.errors", "error"],
        );
        check(
            "ord*s.c*d",
            &["orders.created", "ords.cd"],
            &["orders.create"],
        );
        check("*", &["anything", ""], &["a.b"]);
        check(
            "a*b*c",
            &["abc", "aXbYc", "abbbc", "aXbYbZc"],
            &["aXbY", "bc"],
        );
    }

    #[test]
    fn question_mark_is_one_character() {
        check("v?.*", &["v1.ping", "vé.ping"], &["v10.ping", "v.ping"]);
    }

    #[test]
    fn any_depth() {
        check(
            "orders.**",
            &["orders", "orders.a", "orders.eu.created"],
            &["ordersx", "shop.orders"],
        );
        check(
            "**.error",
            &["error", "db.error", "a.b.c.error"],
            &["error.db"],
        );
        check("a.**.z", &["a.z", "a.b.z", "a.b.c.z"], &["a.b", "z"]);
        check("**.**", &["x", "x.y"], &[]);
    }

    #[test]
    fn invalid_patterns() {
        assert_eq!(TopicPattern::new(""), Err(TopicPatternError::Empty));
        for bad in [".a", "a.", "a..b"] {
            assert!(
                matches!(
                    TopicPattern::new(bad),
                    Err(TopicPatternError::EmptySegment(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            TopicPattern::new("a.b**"),
            Err(TopicPatternError::PartialAnyDepth(_))
        ));
    }

    #[test]
    fn parse_and_display_round_trip() {
        let p: TopicPattern = "orders.*".parse().unwrap();
        assert_eq!(p.to_string(), "orders.*");
        assert_eq!(p.as_str(), "orders.*");
    }
}
