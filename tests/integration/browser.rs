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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_subscribe_form_submits_in_a_real_browser() {
    let (Some(chromedriver), Some(chromium)) = (
        find_program(&["chromedriver"]),
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        assert!(
            std::env::var_os("REQUIRE_BROWSER_TESTS").is_none(),
            "REQUIRE_BROWSER_TESTS is set but chromium or chromedriver is missing"
        );
        eprintln!(
            "skipped: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        );
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
        http: reqwest::Client::new(),
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
