//! Where the configuration comes from: a main file on disk, the demo's files compiled into
//! the binary, or either with its sub-files replaced by a registry version.

use std::path::{Path as FsPath, PathBuf};

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A main file on disk; the files it names are read relative to it.
    File(PathBuf),
    /// Files held in memory: (name, contents), main file first. The demo's defaults are
    /// compiled into the binary ([`DEMO_FILES`]).
    Inline(Vec<(String, String)>),
    /// Another source whose datasets, connectors, consumers and grants files are replaced
    /// by the texts given, by role ("datasets", "connectors", "consumers", "grants"): a
    /// version from the registry, or a change made at run time.
    Versioned {
        base: Box<Source>,
        files: Vec<(String, String)>,
    },
}

/// Why a configuration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    #[error("not among the embedded files")]
    NotEmbedded,
}

/// The demo's configuration, compiled in so `lienthong demo` needs no files.
pub const DEMO_FILES: [(&str, &str); 5] = [
    (
        "config/demo/gateway.toml",
        include_str!("../../config/demo/gateway.toml"),
    ),
    (
        "config/demo/connectors.toml",
        include_str!("../../config/demo/connectors.toml"),
    ),
    (
        "config/demo/consumers.toml",
        include_str!("../../config/demo/consumers.toml"),
    ),
    (
        "config/demo/grants.toml",
        include_str!("../../config/demo/grants.toml"),
    ),
    (
        "config/demo/procedures.toml",
        include_str!("../../config/demo/procedures.toml"),
    ),
];

impl Source {
    /// The embedded demo configuration, with `edit` applied to each file's text.
    pub fn demo_with(edit: impl Fn(&str) -> String) -> Source {
        Source::Inline(
            DEMO_FILES
                .iter()
                .map(|(n, t)| ((*n).to_owned(), edit(t)))
                .collect(),
        )
    }

    /// The embedded demo configuration as shipped.
    pub fn demo() -> Source {
        Source::demo_with(str::to_owned)
    }

    pub fn main_name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Inline(files) => files[0].0.clone(),
            Source::Versioned { base, .. } => base.main_name(),
        }
    }

    pub fn resolve(&self, relative: &str) -> String {
        match self {
            Source::Versioned { base, .. } => base.resolve(relative),
            Source::File(p) => p
                .parent()
                .unwrap_or(FsPath::new("."))
                .join(relative)
                .display()
                .to_string(),
            Source::Inline(files) => {
                let dir = FsPath::new(&files[0].0).parent().unwrap_or(FsPath::new(""));
                dir.join(relative).display().to_string()
            }
        }
    }

    /// A path on disk named in config: relative to the main file, or to the working
    /// directory for the embedded configuration.
    pub fn resolve_disk(&self, relative: &str) -> String {
        match self {
            Source::File(_) => self.resolve(relative),
            Source::Inline(_) => relative.to_owned(),
            Source::Versioned { base, .. } => base.resolve_disk(relative),
        }
    }

    pub fn read(&self, name: &str) -> Result<String, ReadError> {
        match self {
            // A version's files are taken by role before this is asked.
            Source::Versioned { base, .. } => base.read(name),
            Source::File(_) => std::fs::read_to_string(name).map_err(ReadError::Io),
            Source::Inline(files) => files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.clone())
                .ok_or(ReadError::NotEmbedded),
        }
    }

    /// The same main file with the sub-files replaced by `files`.
    pub fn with_files(&self, files: Vec<(String, String)>) -> Source {
        Source::Versioned {
            base: Box::new(self.base().clone()),
            files,
        }
    }

    /// The source the files came from before any version replaced them.
    pub fn base(&self) -> &Source {
        match self {
            Source::Versioned { base, .. } => base.base(),
            other => other,
        }
    }
}
