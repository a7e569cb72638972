//! The return instructions of a function, where the hooks run instead of uretprobes (a
//! uretprobe rewrites the return address on the stack, and Go moves goroutine stacks), and
//! the prologue's stack check, where an entry hook runs once per call. The machine code is
//! decoded instruction by instruction from the entry, so a `0xC3` byte inside another
//! instruction (an immediate, a displacement) is never taken for a `RET`.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};

use crate::error::GoBinError;

/// How control leaves one function, as file offsets of the instructions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionExits {
    /// Every near `RET` (`C3`, `C2 imm16`, `F3 C3`).
    pub returns: Vec<u64>,
    /// Direct jumps (`JMP`, `Jcc`) to an address outside the function: tail calls, which
    /// return from elsewhere, so hooks on `returns` would miss these exits. The Go compiler
    /// emits them only in generated wrappers; a function with any is better not hooked.
    pub jumps_out: Vec<u64>,
    /// The prologue's stack check: the `JBE` (Go's `JLS`) among the first instructions that
    /// jumps to a block calling `runtime.morestack` and jumping back to the entry. An entry
    /// hook there sees the arguments as at the entry, runs once per call (when the stack must
    /// grow the jump is taken, and the entry runs again), and costs no single-step (uprobes
    /// emulate conditional jumps; a `CMP` at the entry is stepped out of line).
    pub stack_check: Option<u64>,
    /// Direct calls: (file offset of the `CALL`, address it calls). Uprobes emulate a direct
    /// call, so a hook there costs no single-step.
    pub calls: Vec<(u64, u64)>,
}

/// Instructions from the entry in which the stack check must come (`CMP; JBE` or
/// `LEA; CMP; JBE`, and `MOV; SUB; JCS; CMP; JBE` for huge frames).
const STACK_CHECK_WITHIN: usize = 6;
/// Bytes from the morestack block's start in which its jump back to the entry must be.
const MORESTACK_BLOCK_MAX: u64 = 256;

/// File offsets of every near `RET` in `code`; see [`function_exits`].
pub fn return_offsets(
    code: &[u8],
    entry_addr: u64,
    entry_file_offset: u64,
) -> Result<Vec<u64>, GoBinError> {
    Ok(function_exits(code, entry_addr, entry_file_offset)?.returns)
}

/// How control leaves `code`, the bytes of one function from its entry: `entry_addr` is
/// where the code runs, `entry_file_offset` where it is in the file. Any undecodable byte
/// sequence (including an instruction cut by the end of `code`) is an error: a function that
/// cannot be decoded whole is not hooked.
pub fn function_exits(
    code: &[u8],
    entry_addr: u64,
    entry_file_offset: u64,
) -> Result<FunctionExits, GoBinError> {
    let end_addr = entry_addr.saturating_add(code.len() as u64);
    let file_offset_of = |ip: u64| entry_file_offset.saturating_add(ip.wrapping_sub(entry_addr));
    let mut decoder = Decoder::try_with_ip(64, code, entry_addr, DecoderOptions::NONE)
        .map_err(|_| GoBinError::UndecodableInstruction(entry_file_offset))?;
    let mut instruction = Instruction::default();
    let mut exits = FunctionExits::default();
    // (address of the JBE, its target) for a stack check candidate.
    let mut check_candidate: Option<(u64, u64)> = None;
    // (address, is a CALL) of every call, and the addresses of jumps back to the entry.
    let mut calls: Vec<u64> = Vec::new();
    let mut jumps_to_entry: Vec<u64> = Vec::new();
    let mut decoded = 0usize;
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            return Err(GoBinError::UndecodableInstruction(file_offset_of(
                instruction.ip(),
            )));
        }
        // Near returns only: a far return (RETF) is never emitted for Go code.
        if instruction.mnemonic() == Mnemonic::Ret {
            exits.returns.push(file_offset_of(instruction.ip()));
        }
        // A relative branch operand on anything but CALL: JMP, Jcc, JRCXZ, LOOP.
        let direct_jump = instruction.op0_kind() == OpKind::NearBranch64
            && instruction.mnemonic() != Mnemonic::Call;
        if direct_jump && !(entry_addr..end_addr).contains(&instruction.near_branch_target()) {
            exits.jumps_out.push(file_offset_of(instruction.ip()));
        }
        if decoded < STACK_CHECK_WITHIN
            && check_candidate.is_none()
            && instruction.mnemonic() == Mnemonic::Jbe
            && instruction.op0_kind() == OpKind::NearBranch64
        {
            check_candidate = Some((instruction.ip(), instruction.near_branch_target()));
        }
        if instruction.mnemonic() == Mnemonic::Call {
            calls.push(instruction.ip());
            if instruction.op0_kind() == OpKind::NearBranch64 {
                exits.calls.push((
                    file_offset_of(instruction.ip()),
                    instruction.near_branch_target(),
                ));
            }
        }
        if instruction.mnemonic() == Mnemonic::Jmp
            && instruction.op0_kind() == OpKind::NearBranch64
            && instruction.near_branch_target() == entry_addr
        {
            jumps_to_entry.push(instruction.ip());
        }
        decoded += 1;
    }
    // The candidate's target block must call (runtime.morestack) and then jump back to the
    // entry, within a few instructions: that is Go's stack growth path and nothing else.
    exits.stack_check = check_candidate.and_then(|(check, target)| {
        let block = target..target.saturating_add(MORESTACK_BLOCK_MAX);
        let back = jumps_to_entry.iter().find(|jump| block.contains(jump))?;
        let calls_first = calls.iter().any(|call| (target..*back).contains(call));
        (target > check && calls_first).then(|| file_offset_of(check))
    });
    Ok(exits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_ret_form_at_instruction_starts() {
        // mov eax, 0xc3c3c3c3; ret; ret 8; rep ret; int3
        let code = [
            0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc2, 0x08, 0x00, 0xf3, 0xc3, 0xcc,
        ];
        assert_eq!(
            return_offsets(&code, 0x40_1000, 0x1000),
            Ok(vec![0x1005, 0x1006, 0x1009])
        );
    }

    #[test]
    fn a_c3_inside_a_displacement_is_not_a_return() {
        // mov rax, [rip + 0xc3]; lea rcx, [rax + 0xc3c3]
        let code = [
            0x48, 0x8b, 0x05, 0xc3, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x88, 0xc3, 0xc3, 0x00, 0x00,
        ];
        assert_eq!(return_offsets(&code, 0x1000, 0x1000), Ok(vec![]));
    }

    #[test]
    fn jumps_out_of_the_function_are_exits_and_jumps_inside_are_not() {
        // jmp +0 (inside); je -0x100 (outside); jmp rel32 far ahead (outside); ret
        let code = [
            0xeb, 0x00, 0x0f, 0x84, 0xfa, 0xfe, 0xff, 0xff, 0xe9, 0x00, 0x10, 0x00, 0x00, 0xc3,
        ];
        assert_eq!(
            function_exits(&code, 0x40_1000, 0x1000),
            Ok(FunctionExits {
                returns: vec![0x100d],
                jumps_out: vec![0x1002, 0x1008],
                stack_check: None,
                calls: vec![],
            })
        );
    }

    #[test]
    fn the_stack_check_is_the_prologues_jbe_to_a_morestack_block_that_jumps_back() {
        // 0x00 cmp rsp,[r14+0x10]; 0x04 jbe 0x0c; 0x06 sub rsp,0x68; 0x0a ret; 0x0b int3;
        // 0x0c mov [rsp+8],rax; 0x11 call +0; 0x16 jmp 0x00
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x76, 0x06, 0x48, 0x83, 0xec, 0x68, 0xc3, 0xcc, 0x48, 0x89,
            0x44, 0x24, 0x08, 0xe8, 0x00, 0x00, 0x00, 0x00, 0xeb, 0xe8,
        ];
        let exits = function_exits(&code, 0x40_1000, 0x1000);
        assert_eq!(
            exits.as_ref().map(|e| e.calls.clone()),
            Ok(vec![(0x1011, 0x40_1016)])
        );
        assert_eq!(exits.map(|e| e.stack_check), Ok(Some(0x1004)));
        // Without the jump back to the entry the block is not morestack's: no stack check.
        let mut no_loop = code;
        no_loop[22] = 0xc3;
        no_loop[23] = 0xcc;
        let exits = function_exits(&no_loop, 0x40_1000, 0x1000);
        assert_eq!(exits.map(|e| e.stack_check), Ok(None));
        // Nor without the call.
        let mut no_call = code;
        no_call[17..22].copy_from_slice(&[0x90; 5]);
        let exits = function_exits(&no_call, 0x40_1000, 0x1000);
        assert_eq!(exits.map(|e| e.stack_check), Ok(None));
    }

    #[test]
    fn cut_or_invalid_code_is_an_error() {
        // mov eax, imm32 cut after two bytes of its immediate.
        assert_eq!(
            return_offsets(&[0xc3, 0xb8, 0x01, 0x02], 0x1000, 0x2000),
            Err(GoBinError::UndecodableInstruction(0x2001))
        );
        // 0x06 (push es) does not exist in 64-bit mode.
        assert_eq!(
            return_offsets(&[0x06], 0x1000, 0x2000),
            Err(GoBinError::UndecodableInstruction(0x2000))
        );
    }
}
