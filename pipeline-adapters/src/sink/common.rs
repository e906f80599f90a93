//! [`SinkCommon`]: the settings every sink's config has, and their setters.

use super::retry::RetryPolicy;
use super::traits::DeadLetterHook;
use std::fmt;
use std::sync::Arc;

/// The settings every sink has: its name, how it retries, where undeliverable events
/// go. Each `*SinkConfig` holds one, sets it through [`common_setters!`] and checks it
/// with [`validate`](Self::validate).
#[derive(Clone)]
pub(crate) struct SinkCommon {
    /// In logs and the `sink` metrics label; not empty.
    pub(crate) name: Arc<str>,
    /// Valid by [`RetryPolicy::validate`]. The file sink, which tries each write once,
    /// keeps one attempt here and has no `retry` setter.
    pub(crate) retry: RetryPolicy,
    /// `None`: undelivered events are counted and logged.
    pub(crate) dead_letter: Option<DeadLetterHook>,
}

impl SinkCommon {
    pub(crate) fn new(name: &str, retry: RetryPolicy) -> Self {
        SinkCommon {
            name: name.into(),
            retry,
            dead_letter: None,
        }
    }

    /// The setting that breaks its rule, named as its setter, and the rule.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.name.is_empty() {
            return Err(("name", "must not be empty".into()));
        }
        self.retry
            .validate()
            .map_err(|error| ("retry", error.to_string()))
    }
}

impl fmt::Debug for SinkCommon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkCommon")
            .field("name", &self.name)
            .field("retry", &self.retry)
            .field("dead_letter", &self.dead_letter.as_ref().map(|_| ".."))
            .finish()
    }
}

/// The setters of a config's [`SinkCommon`] (a field named `common`): `name`, `retry`
/// (left out with `retry: none`) and `dead_letter`, the last two with the docs given,
/// which say what differs between sinks.
macro_rules! common_setters {
    (name: $name:literal, retry: none, dead_letter: $dead_letter:literal) => {
        $crate::sink::common_setters!(@name $name);
        $crate::sink::common_setters!(@dead_letter $dead_letter);
    };
    (name: $name:literal, retry: $retry:literal, dead_letter: $dead_letter:literal) => {
        $crate::sink::common_setters!(@name $name);

        #[doc = $retry]
        pub fn retry(mut self, retry: $crate::sink::RetryPolicy) -> Self {
            self.common.retry = retry;
            self
        }

        $crate::sink::common_setters!(@dead_letter $dead_letter);
    };
    (@name $name:literal) => {
        #[doc = concat!("The name in logs and the `sink` metrics label (default `\"", $name, "\"`).")]
        pub fn name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
            self.common.name = name.into();
            self
        }
    };
    (@dead_letter $doc:literal) => {
        #[doc = $doc]
        pub fn dead_letter(
            mut self,
            hook: impl Fn($crate::sink::Undelivered) + Send + Sync + 'static,
        ) -> Self {
            self.common.dead_letter = Some(std::sync::Arc::new(hook));
            self
        }
    };
}

pub(crate) use common_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_settings_but_not_the_hook() {
        let mut common = SinkCommon::new("out", RetryPolicy::new().max_attempts(3));
        assert!(format!("{common:?}").ends_with("dead_letter: None }"));
        common.dead_letter = Some(Arc::new(|_| {}));
        let text = format!("{common:?}");
        assert!(
            text.starts_with("SinkCommon { name: \"out\", retry: RetryPolicy { max_attempts: 3,"),
            "{text}"
        );
        assert!(text.ends_with("dead_letter: Some(\"..\") }"), "{text}");
    }

    #[test]
    fn validate_names_the_setting() {
        let valid = SinkCommon::new("out", RetryPolicy::new());
        assert_eq!(valid.validate(), Ok(()));
        let unnamed = SinkCommon::new("", RetryPolicy::new());
        assert_eq!(
            unnamed.validate(),
            Err(("name", "must not be empty".to_owned()))
        );
        let never = SinkCommon::new("out", RetryPolicy::new().max_attempts(0));
        assert_eq!(
            never.validate(),
            Err(("retry", "retry.max_attempts must be at least 1".to_owned()))
        );
    }
}
