//! The hook finder on real Go programs built here with the system's Go: the version, the
//! entries and return instructions of `crypto/tls.(*Conn)` methods and of `net/http`'s client
//! connection (`(*persistConn)`) checked against
//! `go tool nm` and `go tool objdump`, stripped and not, and the refusals.

mod support;

use std::io::Cursor;

use support::{go_version, nm_address, objdump, GoProgram};
use zerotrace_gobin::{
    find_tls_hook_points, FileSource, GoBinError, GoBinary, GoFunction, HookedFunction, SeekSource,
    TlsHookPoint, TlsHookPoints,
};

fn hook_points(program: GoProgram) -> Vec<TlsHookPoint> {
    let bytes = program.bytes();
    match find_tls_hook_points(bytes.as_slice()) {
        Ok(TlsHookPoints::Found { points, .. }) => points,
        other => panic!("{program:?}: expected hook points, got {other:?}"),
    }
}

fn point(points: &[TlsHookPoint], function: HookedFunction) -> &GoFunction {
    match points.iter().find(|point| point.function == function) {
        Some(point) => &point.location,
        None => panic!("{function:?} not found in {points:?}"),
    }
}

#[test]
fn the_version_is_the_go_that_built_it() {
    let expected = go_version();
    for program in [
        GoProgram::HttpsServer,
        GoProgram::HttpsServerStripped,
        GoProgram::NoTls,
    ] {
        let bytes = program.bytes();
        let binary = match GoBinary::parse(&bytes) {
            Ok(binary) => binary,
            Err(error) => panic!("{program:?}: {error}"),
        };
        let version = binary.go_version().map(|v| v.raw.clone());
        assert_eq!(version.as_deref(), Some(expected.as_str()), "{program:?}");
        assert!(binary.has_register_abi());
    }
}

#[test]
fn entries_match_the_symbol_table_and_the_code_at_those_file_offsets() {
    for program in GoProgram::UNSTRIPPED_SERVERS {
        entries_match_nm_and_objdump(program);
    }
}

fn entries_match_nm_and_objdump(program: GoProgram) {
    let bytes = program.bytes();
    let points = hook_points(program);
    assert_eq!(points.len(), HookedFunction::ALL.len(), "{points:?}");
    for function in HookedFunction::ALL {
        let location = point(&points, function);
        let symbol = nm_address(program.path(), function.symbol());
        assert_eq!(
            Some(location.entry_addr),
            symbol,
            "{program:?} {function:?}"
        );
        // The file bytes at the computed offset are the instructions objdump shows there.
        let instructions = objdump(program.path(), function.symbol());
        let Some(first) = instructions.first() else {
            panic!("objdump shows nothing for {function:?}");
        };
        assert_eq!(first.addr, location.entry_addr);
        let at = usize::try_from(location.entry_file_offset).unwrap_or(usize::MAX);
        assert_eq!(
            bytes.get(at..at + first.bytes.len()),
            Some(first.bytes.as_slice())
        );
        let Some(last) = instructions.last() else {
            unreachable!()
        };
        assert!(
            last.addr + last.bytes.len() as u64 <= location.end_addr,
            "{function:?}"
        );
        assert_eq!(
            location.end_file_offset - location.entry_file_offset,
            location.end_addr - location.entry_addr
        );
    }
}

#[test]
fn every_return_is_a_ret_in_objdump_and_none_is_missed() {
    for program in GoProgram::UNSTRIPPED_SERVERS {
        returns_match_objdump(program);
    }
}

fn returns_match_objdump(program: GoProgram) {
    let bytes = program.bytes();
    for hook in hook_points(program) {
        let location = &hook.location;
        let instructions = objdump(program.path(), hook.function.symbol());
        let rets: Vec<u64> = instructions
            .iter()
            .filter(|instruction| instruction.assembly.starts_with("RET"))
            .map(|instruction| {
                location.entry_file_offset + (instruction.addr - location.entry_addr)
            })
            .collect();
        assert!(
            !rets.is_empty(),
            "{:?} has no RET in objdump",
            hook.function
        );
        // No tail calls: every exit is one of the returns.
        assert_eq!(location.jump_out_file_offsets, Vec::<u64>::new());
        assert_eq!(
            location.return_file_offsets, rets,
            "{program:?} {:?}",
            hook.function
        );
        for offset in &location.return_file_offsets {
            let at = usize::try_from(*offset).unwrap_or(usize::MAX);
            let byte = bytes.get(at).copied();
            assert!(
                matches!(byte, Some(0xc3 | 0xc2 | 0xf3)),
                "{offset:#x}: {byte:?}"
            );
        }
        // The stack check is the prologue's JBE (objdump's first), and the function calls
        // runtime.morestack.
        assert!(instructions
            .iter()
            .any(|instruction| instruction.assembly.contains("runtime.morestack")));
        let check = instructions
            .iter()
            .take(6)
            .find(|instruction| instruction.assembly.starts_with("JBE"))
            .map(|instruction| {
                location.entry_file_offset + (instruction.addr - location.entry_addr)
            });
        assert!(check.is_some(), "{program:?} {:?}: no JBE", hook.function);
        assert_eq!(
            location.stack_check_file_offset, check,
            "{program:?} {:?}",
            hook.function
        );
        // Read's copy into `b` is its one call to runtime.memmove.
        let copies: Vec<u64> = instructions
            .iter()
            .filter(|instruction| instruction.assembly.starts_with("CALL runtime.memmove"))
            .map(|instruction| {
                location.entry_file_offset + (instruction.addr - location.entry_addr)
            })
            .collect();
        if hook.function == HookedFunction::ConnRead {
            assert_eq!(copies.len(), 1, "{program:?}: {copies:?}");
            assert_eq!(hook.copy_call_file_offset, copies.first().copied());
        } else {
            assert_eq!(hook.copy_call_file_offset, None);
        }
    }
}

#[test]
fn stripped_builds_give_the_same_hook_points() {
    for (stripped, unstripped) in [
        (GoProgram::HttpsServerStripped, GoProgram::HttpsServer),
        (GoProgram::HttpsServerPieStripped, GoProgram::HttpsServerPie),
    ] {
        let stripped_bytes = stripped.bytes();
        let Ok(binary) = GoBinary::parse(&stripped_bytes) else {
            panic!("{stripped:?} does not parse");
        };
        assert!(binary.elf().section(".symtab").is_none(), "-s left .symtab");
        assert_eq!(
            hook_points(stripped),
            hook_points(unstripped),
            "{stripped:?}"
        );
    }
}

#[test]
fn files_and_readers_give_what_bytes_give() {
    let program = GoProgram::HttpsServerStripped;
    let from_bytes = find_tls_hook_points(program.bytes().as_slice());
    let file = match std::fs::File::open(program.path()) {
        Ok(file) => file,
        Err(error) => panic!("{error}"),
    };
    let from_file = FileSource::new(file).and_then(find_tls_hook_points);
    let from_reader = SeekSource::new(Cursor::new(program.bytes())).and_then(find_tls_hook_points);
    assert!(matches!(from_bytes, Ok(TlsHookPoints::Found { .. })));
    assert_eq!(from_file, from_bytes);
    assert_eq!(from_reader, from_bytes);
}

#[test]
fn a_program_without_crypto_tls_has_nothing_to_hook() {
    let bytes = GoProgram::NoTls.bytes();
    let outcome = find_tls_hook_points(bytes.as_slice());
    let expected = go_version();
    assert!(
        matches!(&outcome, Ok(TlsHookPoints::NoCryptoTls { go_version: Some(v) }) if v.raw == expected),
        "{outcome:?}"
    );
    let Ok(binary) = GoBinary::parse(&bytes) else {
        panic!("no_tls does not parse");
    };
    assert!(matches!(binary.function("main.main"), Ok(Some(_))));
    assert_eq!(binary.function("crypto/tls.(*Conn).Write"), Ok(None));
}

#[test]
fn other_elf_files_are_not_go() {
    let Ok(bytes) = std::fs::read("/bin/true") else {
        panic!("no /bin/true");
    };
    assert_eq!(
        find_tls_hook_points(bytes.as_slice()),
        Ok(TlsHookPoints::NotGo)
    );
    assert!(matches!(GoBinary::parse(&bytes), Err(GoBinError::NotGo)));
}

#[test]
fn garbage_and_truncated_files_are_errors() {
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(
        find_tls_hook_points(garbage.as_slice()),
        Err(GoBinError::NotElf)
    );
    assert_eq!(find_tls_hook_points(&b""[..]), Err(GoBinError::NotElf));
    let bytes = GoProgram::HttpsServerStripped.bytes();
    let whole = find_tls_hook_points(bytes.as_slice());
    // A cut inside what the finder reads is an error; past it, the same answer as whole.
    let Ok(binary) = GoBinary::parse(&bytes) else {
        panic!("stripped build does not parse");
    };
    let needed_end = [".gopclntab", ".go.buildinfo", ".text"]
        .iter()
        .filter_map(|name| binary.elf().section(name))
        .map(|section| section.offset + section.size.min(4096))
        .max()
        .unwrap_or(0);
    for len in [
        1,
        4,
        20,
        63,
        64,
        200,
        700,
        4096,
        1 << 20,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let outcome = find_tls_hook_points(&bytes[..len]);
        if (len as u64) < needed_end {
            assert!(outcome.is_err(), "cut at {len}: {outcome:?}");
        } else {
            assert!(
                outcome.is_err() || outcome == whole,
                "cut at {len}: {outcome:?}"
            );
        }
    }
}
