//! Canonical URLs, clean text and title keys, for de-duplicating links across feeds.
//!
//! Pure: no I/O.

use url::Url;

/// Query parameters that only track where a click came from; removed from canonical URLs.
const TRACKING_PARAMS: [&str; 14] = [
    "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "ref", "ref_src", "igshid", "yclid",
    "_hsenc", "_hsmi", "mkt_tok", "spm",
];

/// The canonical form of a link: scheme and host in lower case, no default port, no
/// fragment, tracking parameters (`utm_*`, `fbclid`, `gclid`, `mc_cid`, `ref` ...) removed,
/// the remaining query parameters kept in their order, and a trailing `?` or `/` on a bare
/// host normalised.
///
/// ```
/// use herald_core::news::canonical_url;
/// use url::Url;
/// let a = Url::parse("HTTPS://Example.COM:443/a?utm_source=x&id=7&fbclid=y#top").unwrap();
/// assert_eq!(canonical_url(&a), "https://example.com/a?id=7");
/// ```
pub fn canonical_url(url: &Url) -> String {
    let mut url = without_tracking(url);
    url.set_fragment(None);
    // `Url` already lower-cases the scheme and host and drops the default port.
    let mut s = url.to_string();
    if url.query().is_none() {
        // Trailing slashes go, all of them (so that the result is canonical again), but the
        // root's own slash stays. Without query and fragment, the string ends with the path.
        let root = s.len() - url.path().len() + 1;
        while s.len() > root && s.ends_with('/') {
            s.pop();
        }
    }
    s
}

/// The link as it goes out in an issue: the tracking parameters (`utm_*`, `fbclid`, `gclid`,
/// `mc_cid`, `mc_eid`, `ref` ...) removed, everything else (other parameters in their order,
/// the fragment) kept.
///
/// ```
/// use herald_core::news::without_tracking;
/// use url::Url;
/// let a = Url::parse("https://example.com/a?utm_source=x&id=7&mc_eid=1#part-2").unwrap();
/// assert_eq!(without_tracking(&a).as_str(), "https://example.com/a?id=7#part-2");
/// ```
pub fn without_tracking(url: &Url) -> Url {
    let mut url = url.clone();
    if url.query().is_none() {
        return url;
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !k.starts_with("utm_") && !TRACKING_PARAMS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url
}

/// Reduces HTML or plain text to clean text: tags removed (the contents of `script` and
/// `style` dropped), entities decoded, white space collapsed.
///
/// ```
/// use herald_core::news::clean_text;
/// assert_eq!(clean_text("<p>Fish &amp; <b>chips</b>\n now</p><script>x()</script>"), "Fish & chips now");
/// ```
pub fn clean_text(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(comment) = after.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(end) = after.find('>') else {
            // A lone `<` is text.
            out.push_str(after);
            rest = "";
            break;
        };
        let tag = after[1..end].trim_start_matches('/').to_ascii_lowercase();
        let name: String = tag
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        rest = &after[end + 1..];
        if name.is_empty() {
            out.push_str(&after[..=end]);
            continue;
        }
        if (name == "script" || name == "style") && !after[1..].starts_with('/') {
            let close = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = lower
                .find(&close)
                .and_then(|i| rest[i..].find('>').map(|j| &rest[i + j + 1..]))
                .unwrap_or("");
        }
        // Block-level tags separate words.
        out.push(' ');
    }
    out.push_str(rest);
    let decoded = html_escape::decode_html_entities(&out);
    // Bidirectional controls could reorder how a title reads (`gnp.exe` shown as `exe.png`).
    let visible: String = decoded.chars().filter(|c| !is_bidi_control(*c)).collect();
    visible.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The Unicode bidirectional formatting characters: embeddings, overrides, isolates and
/// marks.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Cuts `text` to at most `max` characters at a word boundary, adding an ellipsis when cut.
///
/// ```
/// use herald_core::news::cut_at_word;
/// assert_eq!(cut_at_word("one two three", 9), "one two…");
/// assert_eq!(cut_at_word("short", 9), "short");
/// ```
pub fn cut_at_word(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let limit: String = text.chars().take(max).collect();
    let cut = match limit.rfind(char::is_whitespace) {
        Some(i) if i > 0 => &limit[..i],
        _ => &limit,
    };
    format!(
        "{}…",
        cut.trim_end_matches(|c: char| c.is_whitespace() || ",;:-".contains(c))
    )
}

/// The words of a title, lower-cased, for spotting the same story under slightly different
/// titles.
pub fn title_key(title: &str) -> Vec<String> {
    title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether two titles are near-identical: the same words, or (for titles of four or more
/// words) at least 85 percent of their distinct words shared.
pub fn same_story(a: &[String], b: &[String]) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    if a == b {
        return true;
    }
    if a.len() < 4 || b.len() < 4 {
        return false;
    }
    let sa: std::collections::HashSet<&String> = a.iter().collect();
    let sb: std::collections::HashSet<&String> = b.iter().collect();
    let shared = sa.intersection(&sb).count() as f64;
    let union = sa.union(&sb).count() as f64;
    shared / union >= 0.85
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        canonical_url(&Url::parse(s).unwrap())
    }

    #[test]
    fn canonical_urls_drop_tracking_and_noise() {
        assert_eq!(
            canon("https://example.com/post/?utm_medium=email&utm_campaign=w"),
            "https://example.com/post"
        );
        assert_eq!(canon("http://EXAMPLE.com:80/"), "http://example.com/");
        assert_eq!(
            canon("https://example.com/a?ref=hn&q=1#x"),
            "https://example.com/a?q=1"
        );
        assert_eq!(
            canon("https://example.com/a?gclid=1&mc_cid=2"),
            "https://example.com/a"
        );
        assert_eq!(
            canon("https://example.com:8443/a"),
            "https://example.com:8443/a"
        );
    }

    #[test]
    fn clean_text_handles_entities_comments_and_odd_markup() {
        assert_eq!(clean_text("a<!-- hidden -->b"), "ab");
        assert_eq!(clean_text("1 < 2 &lt; 3"), "1 < 2 < 3");
        assert_eq!(
            clean_text("<style>p{}</style>Hi&nbsp;there"),
            "Hi\u{a0}there"
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(clean_text("Caf&eacute; &#8212; ok"), "Café — ok");
    }

    #[test]
    fn near_identical_titles_are_one_story() {
        let a = title_key("OpenAI releases a new model for coding tasks");
        let b = title_key("OpenAI Releases a New Model for Coding Tasks!");
        let c = title_key("Google releases a new model for image tasks");
        assert!(same_story(&a, &b));
        assert!(!same_story(&a, &c));
    }

    #[test]
    fn titles_lose_bidirectional_controls() {
        assert_eq!(
            clean_text("Invoice \u{202E}gnp.exe\u{202C} and \u{2067}isolate\u{2069}\u{200F}"),
            "Invoice gnp.exe and isolate"
        );
    }
}
