//! Structured logs: human-readable on a terminal, or one JSON object per line.

use slog::{Drain, Level, Logger};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Aligned text, for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A logger writing to stderr at `level` and above.
pub fn build(format: LogFormat, level: Level) -> Logger {
    let drain = match format {
        LogFormat::Text => {
            let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
            slog_async::Async::new(slog_term::FullFormat::new(decorator).build().fuse())
                .chan_size(16 * 1024)
                .build()
                .fuse()
        }
        LogFormat::Json => slog_async::Async::new(
            slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build()
                .fuse(),
        )
        .chan_size(16 * 1024)
        .build()
        .fuse(),
    };
    Logger::root(drain.filter_level(level).fuse(), slog::o!())
}

/// A logger for tests: silent unless `RDB_TEST_LOG` names a level (`debug`, `info`, …).
pub fn for_tests() -> Logger {
    match std::env::var("RDB_TEST_LOG")
        .ok()
        .and_then(|level| level.parse::<Level>().ok())
    {
        Some(level) => build(LogFormat::Text, level),
        None => Logger::root(slog::Discard, slog::o!()),
    }
}
