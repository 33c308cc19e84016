//! Configuration: every error names its key and where the value came from; secrets stay
//! secret; relative paths follow the configuration file.

use crate::harness::{CONFIG, Sandbox};

#[test]
fn an_unknown_key_in_the_file_is_named_with_its_line_and_exits_2() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[delivery]\nconcurency = 4\n"),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("herald.toml:11"), "{run:?}");
    assert!(run.stderr.contains("`delivery.concurency`"), "{run:?}");
    assert!(run.stderr.contains("unknown field `concurency`"), "{run:?}");
}

#[test]
fn a_bad_value_names_the_key_and_its_line() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[schedule]\ntimezone = \"Mars/Olympus\"\ncron = \"every monday\"\n"),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    // Both problems are reported at once.
    assert!(
        run.stderr
            .contains("herald.toml:11: `schedule.timezone`: `Mars/Olympus`"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("herald.toml:12: `schedule.cron`"),
        "{run:?}"
    );
}

#[test]
fn a_wrongly_typed_value_names_the_key_and_its_line() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[news]\nlinks_per_issue = \"five\"\n"),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("herald.toml:11: `news.links_per_issue`"),
        "{run:?}"
    );
}

#[test]
fn a_bad_address_names_the_key() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        CONFIG.replace("<weekly@example.com>", "<weekly at example.com>"),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("herald.toml:3: `newsletter.from`"),
        "{run:?}"
    );
}

#[test]
fn a_missing_directory_names_the_key() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[glossary]\ndir = \"terms\"\n"),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("herald.toml:11: `glossary.dir`: directory"),
        "{run:?}"
    );
    assert!(run.stderr.contains("terms does not exist"), "{run:?}");
}

#[test]
fn a_missing_required_key_is_reported() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        CONFIG.replace("base_url = \"https://news.example.com/\"\n", ""),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("missing field `base_url`"), "{run:?}");
    assert!(run.stderr.contains("newsletter"), "{run:?}");
}

#[test]
fn a_bad_environment_override_names_the_variable() {
    let s = Sandbox::new();
    let run = s.herald_env(&["check"], &[("HERALD_DELIVERY__CONCURRENCY", "lots")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("environment variable HERALD_DELIVERY__CONCURRENCY"),
        "{run:?}"
    );

    let run = s.herald_env(&["check"], &[("HERALD_DELIVERY__CONCURRENCY", "0")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("environment variable HERALD_DELIVERY__CONCURRENCY: `delivery.concurrency`: 0 is out of range"),
        "{run:?}"
    );
}

#[test]
fn an_unknown_environment_key_names_the_variable() {
    let s = Sandbox::new();
    let run = s.herald_env(&["check"], &[("HERALD_STORE__URI", "sqlite://x.db")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("HERALD_STORE__URI"), "{run:?}");
    assert!(run.stderr.contains("unknown field `uri`"), "{run:?}");

    let run = s.herald_env(&["check"], &[("HERALD_SMTP_UR", "smtp://localhost")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("HERALD_SMTP_UR: unknown variable"),
        "{run:?}"
    );
}

#[test]
fn environment_overrides_take_effect() {
    let s = Sandbox::new();
    let other = s.path("elsewhere.db");
    let url = format!("sqlite://{}", other.display());
    let run = s.herald_env(
        &["subscribers", "add", "a@example.com"],
        &[("HERALD_STORE__URL", &url)],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(other.exists());
    assert!(!s.path("herald.db").exists());

    let short = s.path("short.db");
    let url = format!("sqlite://{}", short.display());
    let run = s.herald_env(
        &["subscribers", "add", "a@example.com"],
        &[("HERALD_DATABASE_URL", &url)],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(short.exists());
}

#[test]
fn relative_paths_are_relative_to_the_configuration_file() {
    if crate::harness::sqlite_only("the database file's path") {
        return;
    }
    let s = Sandbox::new();
    std::fs::create_dir_all(s.path("elsewhere")).unwrap();
    let run = {
        let mut cmd = crate::harness::herald_command();
        cmd.args(["--config", s.path("herald.toml").to_str().unwrap(), "check"])
            .current_dir(s.path("elsewhere"));
        crate::harness::Run::from(cmd.output().unwrap())
    };
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        s.path("herald.db").exists(),
        "the database sits beside herald.toml"
    );
    assert!(!s.path("elsewhere/herald.db").exists());

    let run = s.herald_env(&["check"], &[("HERALD_CONFIG", "herald.toml")]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn no_configuration_file_is_a_usage_error() {
    let s = Sandbox::new();
    std::fs::remove_file(s.path("herald.toml")).unwrap();
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("herald.toml does not exist"), "{run:?}");
}

#[test]
fn secrets_never_appear_in_output_or_help() {
    let s = Sandbox::new();
    let secrets = [
        ("HERALD_SMTP_URL", "not a url with hunter2"),
        ("HERALD_SECRET", "sup3r-s1gning-key"),
        ("HERALD_ADMIN_TOKEN", "adm1n-t0ken"),
    ];
    let run = s.herald_env(&["check"], &secrets);
    assert_eq!(
        run.code, 2,
        "a malformed SMTP URL is a configuration error: {run:?}"
    );
    assert!(run.stderr.contains("HERALD_SMTP_URL"), "{run:?}");
    let help = s.herald_env(&["--help"], &secrets);
    let check_help = s.herald_env(&["check", "--help"], &secrets);
    let debug = s.herald_env(&["check"], &[secrets[1], secrets[2], ("RUST_LOG", "trace")]);
    for output in [run.all(), help.all(), check_help.all(), debug.all()] {
        for (_, value) in secrets {
            assert!(!output.contains(value), "secret leaked: {output}");
        }
        assert!(!output.contains("hunter2"), "secret leaked: {output}");
    }
}

#[test]
fn usage_errors_exit_2_and_help_lists_every_command() {
    let s = Sandbox::new();
    assert_eq!(s.herald(&["no-such-command"]).code, 2);
    let help = s.herald(&["--help"]);
    assert_eq!(help.code, 0);
    for command in ["check", "glossary", "subscribers"] {
        assert!(help.stdout.contains(command), "{help:?}");
    }
}

#[test]
fn operator_settings_are_checked_at_start_up_and_exit_2_naming_the_variable() {
    let s = Sandbox::new();
    // A signing key too short to be safe.
    let run = s.herald_env(&["check"], &[("HERALD_SECRET", "short-key")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("HERALD_SECRET"), "{run:?}");
    assert!(run.stderr.contains("at least 32 bytes"), "{run:?}");
    assert!(!run.all().contains("short-key"), "the key is never printed");

    // SMTP without a signing key.
    let run = s.herald_env(&["check"], &[("HERALD_SMTP_URL", "smtp://127.0.0.1:2525")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("HERALD_SECRET is not set"), "{run:?}");

    // A TLS mode that does not exist.
    let run = s.herald_env(
        &["check"],
        &[
            ("HERALD_SMTP_URL", "smtp://127.0.0.1:2525?tls=sometimes"),
            ("HERALD_SECRET", "0123456789abcdef0123456789abcdef"),
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("tls=sometimes"), "{run:?}");

    // A database in a directory that does not exist.
    let run = s.herald_env(
        &["check"],
        &[("HERALD_DATABASE_URL", "sqlite://no-such-dir/herald.db")],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("HERALD_DATABASE_URL"), "{run:?}");
    assert!(run.stderr.contains("no-such-dir"), "{run:?}");
}

#[test]
fn a_dkim_key_that_is_not_an_rsa_key_is_a_configuration_error() {
    let s = Sandbox::new();
    s.write(
        "dkim.pem",
        "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n",
    );
    s.write(
        "herald.toml",
        format!(
            "{CONFIG}\n[delivery.dkim]\ndomain = \"example.com\"\nselector = \"s1\"\nprivate_key_path = \"dkim.pem\"\n"
        ),
    );
    let run = s.herald(&["check"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("delivery.dkim.private_key_path"),
        "{run:?}"
    );
    assert!(run.stderr.contains("dkim.pem"), "{run:?}");
}

#[test]
fn a_reader_that_closes_the_pipe_early_ends_the_output_quietly() {
    let s = Sandbox::new();
    s.write("subscribers/list.csv", "email,name\na@example.com,A\n");
    assert_eq!(
        s.herald(&["subscribers", "import", "subscribers/list.csv"])
            .code,
        0
    );
    for args in [
        &["glossary", "list"][..],
        &["glossary", "list", "--json"],
        &["subscribers", "export"],
    ] {
        // The reading end is closed before herald writes anything, as `| head -0` would.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = s
            .command(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_shipped_systemd_unit_is_hardened_does_not_restart_on_bad_config_and_is_the_readmes() {
    let unit =
        std::fs::read_to_string(crate::harness::repo().join("contrib/herald.service")).unwrap();
    let readme = std::fs::read_to_string(crate::harness::repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&unit),
        "README's unit differs from contrib/herald.service"
    );
    assert!(unit.contains("RestartPreventExitStatus=2"));
    assert!(unit.contains("LimitNOFILE="));
    // systemd reads a comment after a value as part of the value.
    let env_block = &readme[readme.find("HERALD_SMTP_URL=smtps://").unwrap()..];
    let env_block = &env_block[..env_block.find("```").unwrap()];
    for line in env_block.lines().filter(|l| l.contains('=')) {
        assert!(!line.contains('#'), "comment after a value: {line}");
    }
    // Exposure on systemd-analyze's 0-100 scale: 40 is its "4.0".
    let analyzed = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=40"])
        .arg(crate::harness::repo().join("contrib/herald.service"))
        .current_dir(std::env::temp_dir())
        .output();
    match analyzed {
        Ok(out) => assert!(
            out.status.success(),
            "exposure above 4.0:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(e) => crate::harness::skipped(
            "systemd unit exposure check",
            &format!("systemd-analyze is not available ({e})"),
        ),
    }
}

#[test]
fn the_daemon_refuses_to_serve_signed_links_with_the_development_key() {
    let s = Sandbox::new();
    let run = s.herald(&["run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("HERALD_SECRET"), "{run:?}");
    assert!(run.stderr.contains("development key"), "{run:?}");
}

/// Bulk email over SMTP must carry the sender's postal address: without
/// `[newsletter] postal_address`, start-up stops (exit 2) naming the key; with it, both parts
/// of every issue carry it in the footer.
#[test]
fn sending_over_smtp_needs_a_postal_address_and_the_footers_carry_it() {
    let s = Sandbox::new();
    s.write(
        "herald.toml",
        crate::harness::CONFIG.replace(
            "postal_address = \"1 Example Street, 12345 Example City, Exampleland\"\n",
            "",
        ),
    );
    let env = [
        ("HERALD_SMTP_URL", "smtp://127.0.0.1:2525"),
        ("HERALD_SECRET", "0123456789abcdef0123456789abcdef"),
    ];
    let run = s.herald_env(&["check", "--offline"], &env);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("`newsletter.postal_address`") && run.stderr.contains("required"),
        "{run:?}"
    );
    // Without SMTP (the file transport) it stays optional.
    assert_eq!(s.herald(&["check", "--offline"]).code, 0);

    // With it, the file transport's message has it in the text and the HTML footer.
    s.write("herald.toml", crate::harness::CONFIG);
    s.write("subscribers/list.csv", "email,name\nada@example.com,Ada\n");
    let sent = s.herald(&["send"]);
    assert_eq!(sent.code, 0, "{sent:?}");
    let eml = std::fs::read_dir(s.path("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "eml"))
        .expect("a message in the outbox");
    let raw = std::fs::read(eml).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let text = parsed.body_text(0).unwrap();
    let html = parsed.body_html(0).unwrap();
    for part in [&text, &html] {
        assert!(
            part.contains("1 Example Street, 12345 Example City, Exampleland"),
            "{part}"
        );
    }
}

/// SMTP AUTH over a connection that may lack TLS would send the password in the clear:
/// credentials with `tls=none` (or `tls=opportunistic`, which falls back to plain text) stop
/// start-up with exit 2 naming `allow_plaintext_auth`, and never print the password; the
/// operator of a relay on the same host can allow it in the file or the environment.
#[test]
fn smtp_auth_without_tls_is_refused_unless_allow_plaintext_auth_is_set() {
    let s = Sandbox::new();
    let secret = ("HERALD_SECRET", "0123456789abcdef0123456789abcdef");
    for url in [
        "smtp://mailer:pw-hunter2@127.0.0.1:2525",
        "smtp://mailer:pw-hunter2@127.0.0.1:2525?tls=none",
        "smtp://mailer:pw-hunter2@127.0.0.1:2525?tls=opportunistic",
    ] {
        let run = s.herald_env(&["check", "--offline"], &[("HERALD_SMTP_URL", url), secret]);
        assert_eq!(run.code, 2, "{url}: {run:?}");
        assert!(run.stderr.contains("HERALD_SMTP_URL"), "{url}: {run:?}");
        assert!(
            run.stderr.contains("allow_plaintext_auth"),
            "{url}: {run:?}"
        );
        assert!(!run.all().contains("hunter2"), "{url}: {run:?}");
    }

    // TLS from the first byte, or STARTTLS required: AUTH is always encrypted.
    for url in [
        "smtps://mailer:pw-hunter2@127.0.0.1:2465",
        "smtp://mailer:pw-hunter2@127.0.0.1:2587?tls=required",
    ] {
        let run = s.herald_env(&["check", "--offline"], &[("HERALD_SMTP_URL", url), secret]);
        assert_eq!(run.code, 0, "{url}: {run:?}");
    }
    // No credentials, no AUTH: a plain relay on loopback stays as it was.
    let run = s.herald_env(
        &["check", "--offline"],
        &[("HERALD_SMTP_URL", "smtp://127.0.0.1:2525"), secret],
    );
    assert_eq!(run.code, 0, "{run:?}");

    // Allowed by the operator: in the environment, or in `[smtp]`.
    let plain = ("HERALD_SMTP_URL", "smtp://mailer:pw-hunter2@127.0.0.1:2525");
    let run = s.herald_env(
        &["check", "--offline"],
        &[plain, secret, ("HERALD_SMTP__ALLOW_PLAINTEXT_AUTH", "true")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    s.write(
        "herald.toml",
        format!("{CONFIG}\n[smtp]\nallow_plaintext_auth = true\n"),
    );
    let run = s.herald_env(&["check", "--offline"], &[plain, secret]);
    assert_eq!(run.code, 0, "{run:?}");
}
