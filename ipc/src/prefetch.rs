//! Cache-line hints for the shared-memory rings: a consumer asks for the
//! lines of records already published before it reads them, a producer for
//! the lines it is about to overwrite. Only hints: they never fault and
//! change nothing, so a wrong address costs nothing but the hint.

/// Hints that the line at `p` will be read soon.
#[inline(always)]
pub(crate) fn for_read(p: *const u8) {
    // Safe to call in newer Rust, unsafe in 1.85 (our rust-version).
    #[cfg(target_arch = "x86_64")]
    #[allow(unused_unsafe)]
    // SAFETY: a prefetch is only a hint: it never faults, whatever the
    // address, and changes no register or memory.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Hints that the line at `p` will be written soon (PREFETCHW where the CPU
/// has it; nothing elsewhere).
#[inline(always)]
pub(crate) fn for_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS_PREFETCHW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let has = *HAS_PREFETCHW.get_or_init(|| {
            // `__cpuid` is a safe function from Rust 1.87 and an unsafe
            // one before: the block keeps 1.85 (our rust-version) building.
            #[allow(unused_unsafe)]
            // SAFETY: CPUID leaf 0x8000_0001 exists on every x86-64 CPU;
            // the instruction reads no memory.
            let ecx = unsafe { std::arch::x86_64::__cpuid(0x8000_0001) }.ecx;
            ecx & (1 << 8) != 0 // 3DNowPrefetch: PREFETCH / PREFETCHW
        });
        if has {
            // SAFETY: a prefetch is only a hint: it never faults, whatever
            // the address, and changes no register or memory.
            unsafe {
                std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
