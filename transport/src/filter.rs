//! MQTT topic-filter matching (`+`, `#`, and `$share/{group}/` shared subscriptions).

/// Whether `topic` matches the subscription `filter`. A shared subscription
/// `$share/{group}/{filter}` matches as its inner filter.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((_group, inner)) => inner,
            None => return false,
        },
        None => filter,
    };
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn wildcards_and_shared_subscriptions() {
        assert!(topic_matches("passage/v1/+/counts/+", "passage/v1/arena/counts/cam-1"));
        assert!(!topic_matches("passage/v1/+/counts/+", "passage/v1/arena/counts"));
        assert!(topic_matches("passage/#", "passage/v1/arena/counts/cam-1"));
        assert!(topic_matches("$share/ingest/passage/v1/+/counts/+", "passage/v1/a/counts/b"));
        assert!(!topic_matches("$share/ingest", "passage"));
        assert!(!topic_matches("passage/v1/a/match", "passage/v1/a/match/extra"));
    }
}
