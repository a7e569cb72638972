//! The programming language of an instrumented process, as OBI reports it in
//! the resource attribute `telemetry.sdk.language`: which runtime the program
//! runs on, judged from what the worker is told or may read.
//!
//! In order: a Go program (the loader found Go's runtime in the executable,
//! answering the Go TLS hooks' requests); a language runtime library the
//! process maps (the JVM, .NET's CoreCLR, CPython, Ruby, Node.js, PHP: the
//! loader reads /proc/PID/maps); the executable's name (`java`, `node`,
//! `python3.11`, `ruby`, `dotnet`, `php-fpm8.2`…), from /proc/PID/exe as the
//! loader read it, else argv[0] (world-readable). Nothing else: `generic`,
//! as OBI says of C, C++ and programs it cannot tell.

/// A program's language, with OBI's names for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Go,
    Java,
    Dotnet,
    Python,
    Ruby,
    Nodejs,
    Php,
    Generic,
}

/// Every name [`Language::as_str`] gives, for `languages` selectors.
pub const LANGUAGE_NAMES: [&str; 8] = [
    "go", "java", "dotnet", "python", "ruby", "nodejs", "php", "generic",
];

impl Language {
    /// The value of `telemetry.sdk.language`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Go => "go",
            Language::Java => "java",
            Language::Dotnet => "dotnet",
            Language::Python => "python",
            Language::Ruby => "ruby",
            Language::Nodejs => "nodejs",
            Language::Php => "php",
            Language::Generic => "generic",
        }
    }
}

/// What is known of a process to judge its language by.
#[derive(Debug, Default, Clone, Copy)]
pub struct LanguageClues<'a> {
    /// The loader answered a Go TLS request: the executable is Go.
    pub go: bool,
    /// Language runtime libraries the process maps (paths).
    pub runtime_libraries: &'a [String],
    /// The executable's path as the loader read it from /proc/PID/exe.
    pub exe_path: Option<&'a str>,
    /// argv[0] from /proc/PID/cmdline.
    pub argv0: Option<&'a str>,
}

/// The language the clues point to.
pub fn judge(clues: LanguageClues<'_>) -> Language {
    if clues.go {
        return Language::Go;
    }
    if let Some(language) = clues
        .runtime_libraries
        .iter()
        .find_map(|path| from_library(base_name(path)))
    {
        return language;
    }
    [clues.exe_path, clues.argv0]
        .into_iter()
        .flatten()
        .find_map(|path| from_executable(base_name(path)))
        .unwrap_or(Language::Generic)
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn from_library(name: &str) -> Option<Language> {
    let language = if name.starts_with("libjvm.so") {
        Language::Java
    } else if name.starts_with("libcoreclr.so") {
        Language::Dotnet
    } else if name.starts_with("libpython") {
        Language::Python
    } else if name.starts_with("libruby") {
        Language::Ruby
    } else if name.starts_with("libnode.so") {
        Language::Nodejs
    } else if name.starts_with("libphp") {
        Language::Php
    } else {
        return None;
    };
    Some(language)
}

/// A name followed by nothing but a version: `python3.11`, `ruby3.1`.
fn versioned(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .is_some_and(|version| version.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

fn from_executable(name: &str) -> Option<Language> {
    let language = match name {
        "java" => Language::Java,
        "dotnet" => Language::Dotnet,
        "node" | "nodejs" => Language::Nodejs,
        _ if versioned(name, "python") => Language::Python,
        _ if versioned(name, "ruby") => Language::Ruby,
        _ if name.contains("php") => Language::Php,
        _ => return None,
    };
    Some(language)
}

/// argv[0] of a process, from its world-readable command line.
pub fn read_argv0(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|b| *b == 0).next()?;
    (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(exe: &str, argv0: &str, libraries: &[&str]) -> Language {
        let libraries: Vec<String> = libraries.iter().map(|l| (*l).to_owned()).collect();
        judge(LanguageClues {
            go: false,
            runtime_libraries: &libraries,
            exe_path: (!exe.is_empty()).then_some(exe),
            argv0: (!argv0.is_empty()).then_some(argv0),
        })
    }

    #[test]
    fn interpreters_are_known_by_their_executable() {
        assert_eq!(of("/usr/bin/python3.11", "", &[]), Language::Python);
        assert_eq!(of("/usr/bin/python3", "", &[]), Language::Python);
        assert_eq!(of("/usr/bin/node", "", &[]), Language::Nodejs);
        assert_eq!(of("/usr/bin/nodejs", "", &[]), Language::Nodejs);
        assert_eq!(of("/usr/bin/ruby3.1", "", &[]), Language::Ruby);
        assert_eq!(
            of("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "", &[]),
            Language::Java
        );
        assert_eq!(of("/usr/share/dotnet/dotnet", "", &[]), Language::Dotnet);
        assert_eq!(of("/usr/sbin/php-fpm8.2", "", &[]), Language::Php);
    }

    #[test]
    fn names_that_only_start_like_an_interpreter_are_not_one() {
        assert_eq!(of("/usr/bin/python3-config", "", &[]), Language::Generic);
        assert_eq!(of("/usr/local/bin/rubyserver", "", &[]), Language::Generic);
        assert_eq!(of("/usr/local/bin/nodeapp", "", &[]), Language::Generic);
        assert_eq!(
            of("/usr/sbin/nginx", "nginx: worker process", &[]),
            Language::Generic
        );
    }

    #[test]
    fn an_embedded_runtime_wins_over_the_executable_s_name() {
        // uWSGI embeds CPython; a JVM started by its own launcher; .NET's apphost.
        assert_eq!(
            of(
                "/usr/bin/uwsgi-core",
                "uwsgi",
                &["/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"]
            ),
            Language::Python
        );
        assert_eq!(
            of(
                "/opt/app/bin/launcher",
                "",
                &["/opt/jdk/lib/server/libjvm.so"]
            ),
            Language::Java
        );
        assert_eq!(
            of(
                "/app/MyService",
                "",
                &["/usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.0/libcoreclr.so"]
            ),
            Language::Dotnet
        );
    }

    #[test]
    fn argv0_stands_in_when_the_executable_is_unknown() {
        assert_eq!(of("", "python3", &[]), Language::Python);
        assert_eq!(of("", "/usr/bin/node", &[]), Language::Nodejs);
        assert_eq!(of("", "", &[]), Language::Generic);
        // The executable the loader read wins over what argv[0] claims.
        assert_eq!(of("/usr/bin/python3.11", "node", &[]), Language::Python);
    }

    #[test]
    fn go_is_what_the_loader_found_in_the_executable() {
        let clues = LanguageClues {
            go: true,
            exe_path: Some("/usr/local/bin/python3"),
            ..LanguageClues::default()
        };
        assert_eq!(judge(clues), Language::Go);
        assert_eq!(Language::Go.as_str(), "go");
        assert_eq!(Language::Generic.as_str(), "generic");
    }

    #[test]
    fn this_process_argv0_is_read() {
        let argv0 = read_argv0(std::process::id()).unwrap_or_default();
        let exe = std::env::current_exe().unwrap_or_default();
        let own_name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        assert!(argv0.ends_with(own_name), "{argv0} vs {own_name}");
    }
}
