//! The subscribe page in a real headless browser (Debian's Chromium, driven over WebDriver by
//! chromedriver): the form submits without JavaScript and shows its confirmation page.
//!
//! `.ci/run` installs chromium and chromium-driver and sets `REQUIRE_BROWSER_TESTS=1`, so in
//! CI a missing browser fails the test; elsewhere it is skipped with a message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Sandbox;
use crate::smtp;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([
        std::path::PathBuf::from("/usr/bin"),
        std::path::PathBuf::from("/usr/lib/chromium"),
    ]) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

struct Driver {
    child: std::process::Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let value: Value = response.json().await.unwrap();
        assert!(value["value"].get("error").is_none(), "{path}: {value}");
        value["value"].clone()
    }
}

/// A browser session (Chromium over WebDriver), or `None` when no browser is installed and
/// `REQUIRE_BROWSER_TESTS` is not set (the skip is printed).
struct Browser {
    driver: Driver,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Option<Self> {
        let (Some(chromedriver), Some(chromium)) = (
            find_program(&["chromedriver"]),
            find_program(&["chromium", "chromium-browser", "google-chrome"]),
        ) else {
            assert!(
                std::env::var_os("REQUIRE_BROWSER_TESTS").is_none(),
                "REQUIRE_BROWSER_TESTS is set but chromium or chromedriver is missing"
            );
            crate::harness::skipped(
                "browser tests",
                "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: crate::harness::http_client(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                && r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let session = driver
            .call(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.path().display())]
                }}}})),
            )
            .await;
        let id = session["sessionId"].as_str().unwrap().to_owned();
        Some(Self {
            driver,
            session: id,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_subscribe_form_submits_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let server = smtp::start(None);
    let s = Sandbox::new();
    let env = [
        ("HERALD_SMTP_URL", server.url()),
        (
            "HERALD_SECRET",
            "browser-test-secret-0123456789abcdef".to_owned(),
        ),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (base, stop, handle) =
        crate::daemon::start(&s, &env_ref, Arc::new(herald::clock::SystemClock)).await;

    let (driver, id) = (&browser.driver, browser.session.clone());
    let at = |p: &str| format!("/session/{id}{p}");
    driver
        .call(
            reqwest::Method::POST,
            &at("/url"),
            Some(json!({"url": base})),
        )
        .await;
    let title = driver.call(reqwest::Method::GET, &at("/title"), None).await;
    assert_eq!(title, "Test Weekly");
    for (selector, text) in [("#email", "browser@example.com"), ("#name", "Brow Ser")] {
        let element = driver
            .call(
                reqwest::Method::POST,
                &at("/element"),
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        let eid = element[ELEMENT].as_str().unwrap().to_owned();
        driver
            .call(
                reqwest::Method::POST,
                &at(&format!("/element/{eid}/value")),
                Some(json!({"text": text})),
            )
            .await;
    }
    let button = driver
        .call(
            reqwest::Method::POST,
            &at("/element"),
            Some(json!({"using": "css selector", "value": "button[type=submit]"})),
        )
        .await;
    let eid = button[ELEMENT].as_str().unwrap().to_owned();
    driver
        .call(
            reqwest::Method::POST,
            &at(&format!("/element/{eid}/click")),
            Some(json!({})),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let title = driver.call(reqwest::Method::GET, &at("/title"), None).await;
        if title == "Check your inbox" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the confirmation page never showed (title {title})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = driver
        .call(reqwest::Method::GET, &at("/source"), None)
        .await;
    assert!(
        source
            .as_str()
            .unwrap()
            .contains("a confirmation email is on its way")
    );
    let _ = driver
        .http
        .delete(format!("{}{}", driver.url, at("")))
        .send()
        .await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while !server
        .mailbox
        .per_recipient()
        .contains_key("browser@example.com")
    {
        assert!(Instant::now() < deadline, "no confirmation email");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap();
}

/// Checks a page as a reviewer would, in the page itself: the language, one `h1`, the
/// landmarks, a label for every input, text in every link, `alt` on every image, text
/// contrast of at least 4.5:1 against its background (WCAG AA), and no horizontal overflow.
/// Returns the problems found.
const PAGE_CHECKS: &str = r#"
__CONTRAST__
const problems = [];
const root = document.documentElement;
if (!root.lang) problems.push('no lang attribute');
if (document.querySelectorAll('h1').length !== 1) problems.push('h1 count ' + document.querySelectorAll('h1').length);
for (const landmark of ['header', 'nav', 'main', 'footer']) {
  if (!document.querySelector(landmark)) problems.push('no <' + landmark + '>');
}
for (const input of document.querySelectorAll('input')) {
  const labelled = (input.id && document.querySelector('label[for="' + input.id + '"]')) || input.getAttribute('aria-label');
  if (!labelled) problems.push('input without a label: ' + input.name);
}
for (const a of document.querySelectorAll('a')) {
  if (!a.textContent.trim() && !a.getAttribute('aria-label')) problems.push('link without text: ' + a.href);
}
for (const img of document.querySelectorAll('img')) {
  if (!img.hasAttribute('alt')) problems.push('image without alt: ' + img.src);
}
for (const el of document.querySelectorAll('p, li, a, h1, h2, h3, label, span, blockquote, strong')) {
  if (!el.textContent.trim() || el.classList.contains('skip')) continue;
  const fg = luminance(getComputedStyle(el).color);
  const bg = luminance(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ' for <' + el.tagName.toLowerCase() + '> ' + el.textContent.trim().slice(0, 40));
}
if (root.scrollWidth > root.clientWidth) problems.push('horizontal overflow: ' + root.scrollWidth + ' > ' + root.clientWidth);
return problems;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn glossary_pages_fit_a_phone_and_a_desktop_and_pass_accessibility_checks() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let s = Sandbox::new();
    let env = [("HERALD_SECRET", "browser-test-secret-0123456789abcdef")];
    let (base, stop, handle) =
        crate::daemon::start(&s, &env, Arc::new(herald::clock::SystemClock)).await;
    let shots = tempfile::tempdir().unwrap();
    let pages = [
        ("glossary", format!("{base}glossary")),
        ("search", format!("{base}glossary?q=token")),
        (
            "term",
            format!("{base}glossary/retrieval-augmented-generation"),
        ),
        ("subscribe", base.clone()),
    ];
    for (width, height) in [(375, 812), (1280, 900)] {
        browser.resize(width, height).await;
        let inner = browser.script("return window.innerWidth;").await;
        assert!(
            inner
                .as_u64()
                .is_some_and(|w| w.abs_diff(width.into()) <= 20),
            "the viewport is {inner}, not about {width} px"
        );
        for (name, url) in &pages {
            browser.goto(url).await;
            let problems = browser.script(&checks(PAGE_CHECKS)).await;
            assert_eq!(problems, json!([]), "{name} at {width} px: {problems:#}");
            let png = browser.screenshot().await;
            assert!(png.starts_with(b"\x89PNG"), "{name} at {width} px");
            std::fs::write(shots.path().join(format!("{name}-{width}.png")), &png).unwrap();
        }
    }
    // The checks can fail: a page wider than the phone and faint text are caught.
    browser.resize(375, 812).await;
    browser.goto(&format!("{base}glossary")).await;
    browser
        .script("document.body.insertAdjacentHTML('beforeend', '<div style=\"width:900px\"><p style=\"color:#ccc\">faint</p></div>'); return null;")
        .await;
    let problems = browser.script(&checks(PAGE_CHECKS)).await.to_string();
    assert!(problems.contains("horizontal overflow"), "{problems}");
    assert!(problems.contains("for <p> faint"), "{problems}");
    stop.cancel();
    handle.await.unwrap();
}

/// Colour contrast as WCAG computes it, shared by the page and email checks: relative
/// luminance of a CSS colour, and the first opaque background behind an element.
const CONTRAST: &str = r#"
const channels = (c) => c.match(/[\d.]+/g).map(Number);
const luminance = (c) => {
  const [r, g, b] = channels(c).slice(0, 3).map((v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const background = (el) => {
  for (; el; el = el.parentElement) {
    const c = getComputedStyle(el).backgroundColor;
    const parts = channels(c);
    if (parts.length < 4 || parts[3] > 0) return c;
  }
  return 'rgb(255, 255, 255)';
};
"#;

/// A check script with the contrast helpers in place of its `__CONTRAST__` marker.
fn checks(script: &str) -> String {
    script.replace("__CONTRAST__", CONTRAST)
}

/// The email's own checks: every visible text and link against what is behind it (WCAG AA,
/// 4.5:1), and no horizontal overflow.
const EMAIL_CHECKS: &str = r#"
__CONTRAST__
const problems = [];
const root = document.documentElement;
let checked = 0;
for (const el of document.querySelectorAll('p, a, h1, h2, td, div, strong, em, span')) {
  const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || el.getClientRects().length === 0 || getComputedStyle(el).display === 'none') continue;
  checked++;
  const fg = luminance(getComputedStyle(el).color);
  const bg = luminance(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ' for <' + el.tagName.toLowerCase() + ' class="' + el.className + '"> ' + el.textContent.trim().slice(0, 40));
}
if (checked < 20) problems.push('only ' + checked + ' elements checked');
if (root.scrollWidth > root.clientWidth) problems.push('horizontal overflow: ' + root.scrollWidth + ' > ' + root.clientWidth);
return problems;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_email_fits_375_and_800_px_in_light_and_dark_mode_with_readable_contrast() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let s = Sandbox::new();
    let repo = crate::harness::repo();
    s.copy_dir(&repo.join("glossary"), "glossary");
    s.copy_dir(&repo.join("templates"), "templates");
    s.copy_dir(&repo.join("news"), "news");
    s.write(
        "subscribers/list.csv",
        "email,name,first_name\nreader@example.org,Ada Reader,Ada\n",
    );
    s.write(
        "herald.toml",
        format!(
            "{}\n[news]\ncurated = \"news/curated.toml\"\n",
            crate::harness::CONFIG
        ),
    );
    let run = s.herald(&["preview", "--out", "preview"]);
    assert_eq!(run.code, 0, "{run:?}");
    let url = format!("file://{}", s.path("preview/issue.html").display());
    let shots = tempfile::tempdir().unwrap();
    for scheme in ["light", "dark"] {
        browser
            .call(
                reqwest::Method::POST,
                "/goog/cdp/execute",
                Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                    "features": [{"name": "prefers-color-scheme", "value": scheme}]
                }})),
            )
            .await;
        for (width, height) in [(375, 812), (800, 900)] {
            browser.resize(width, height).await;
            browser.goto(&url).await;
            let dark = browser
                .script("return matchMedia('(prefers-color-scheme: dark)').matches;")
                .await;
            assert_eq!(
                dark,
                json!(scheme == "dark"),
                "the {scheme} scheme is in effect"
            );
            let problems = browser.script(&checks(EMAIL_CHECKS)).await;
            assert_eq!(problems, json!([]), "{scheme} at {width} px: {problems:#}");
            let png = browser.screenshot().await;
            std::fs::write(
                shots.path().join(format!("issue-{scheme}-{width}.png")),
                &png,
            )
            .unwrap();
        }
    }
    // The check can fail: a dark footer link on the dark background is caught.
    browser
        .script("document.querySelector('.footer a').setAttribute('style', 'color: #3f3f46 !important'); return null;")
        .await;
    let problems = browser.script(&checks(EMAIL_CHECKS)).await.to_string();
    assert!(problems.contains("contrast"), "{problems}");
}
