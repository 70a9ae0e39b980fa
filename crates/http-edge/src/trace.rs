//! W3C Trace Context (`traceparent`), the one place both services read and write it.
//!
//! `traceparent: 00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>`: version `00`,
//! lowercase hex, neither id all zeros. A header that does not follow these rules is
//! ignored and the request starts a trace of its own ([`TraceParent::parse`] says `None`).
//! A later version (not `ff`) is read for its first four fields, as the specification asks.
//!
//! Ids are random ([`TraceId::random`], [`SpanId::random`]) from the thread's generator: no
//! system call per id. Hex forms are written into stack buffers ([`Hex`]): logging an id or
//! sending the header allocates nothing.

use std::fmt;

/// `traceparent`.
pub const TRACEPARENT: &str = "traceparent";

/// A 16-byte trace id, never all zeros once made by [`TraceId::random`] or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, never all zeros once made by [`SpanId::random`] or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

/// A trace's place: its id, the span a request is a child of, and the trace flags
/// (`01`: sampled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: TraceId,
    /// The span the receiver's span is a child of.
    pub parent_id: SpanId,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

/// An id written as lowercase hex in a buffer on the stack (`N` characters).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are ever written into the buffer.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl<const N: usize> fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as hex into `out` (twice as long).
fn encode(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// Lowercase hex `text` into `out` (half as long); `None` for any other character.
fn decode<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

impl TraceId {
    /// A new random trace id (never all zeros).
    pub fn random() -> Self {
        loop {
            let id: [u8; 16] = rand::random();
            if id != [0; 16] {
                return Self(id);
            }
        }
    }

    /// As 32 hex characters.
    pub fn hex(&self) -> Hex<32> {
        let mut out = [0u8; 32];
        encode(&self.0, &mut out);
        Hex(out)
    }
}

impl SpanId {
    /// A new random span id (never all zeros).
    pub fn random() -> Self {
        loop {
            let id: [u8; 8] = rand::random();
            if id != [0; 8] {
                return Self(id);
            }
        }
    }

    /// As 16 hex characters.
    pub fn hex(&self) -> Hex<16> {
        let mut out = [0u8; 16];
        encode(&self.0, &mut out);
        Hex(out)
    }
}

impl TraceParent {
    /// The length of a version-00 header.
    pub const LEN: usize = 55;

    /// A new trace (random id), sampled, whose first span is a child of `parent_id`.
    pub fn new_trace(parent_id: SpanId) -> Self {
        Self {
            trace_id: TraceId::random(),
            parent_id,
            flags: 1,
        }
    }

    /// The same trace and flags with `parent_id` as the parent: what a span sends to the
    /// spans it causes.
    pub fn child_of(&self, parent_id: SpanId) -> Self {
        Self { parent_id, ..*self }
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// A `traceparent` value, or `None` when it breaks the rules (see the module).
    pub fn parse(value: &[u8]) -> Option<Self> {
        let value = value.trim_ascii();
        if value.len() < Self::LEN {
            return None;
        }
        let version: [u8; 1] = decode(&value[0..2])?;
        // Version ff is forbidden; version 00 is exactly 55 characters; a later version
        // may add fields after a dash.
        if version[0] == 0xff
            || (version[0] == 0 && value.len() != Self::LEN)
            || (value.len() > Self::LEN && value[Self::LEN] != b'-')
        {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id: [u8; 16] = decode(&value[3..35])?;
        let parent_id: [u8; 8] = decode(&value[36..52])?;
        let flags: [u8; 1] = decode(&value[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags: flags[0],
        })
    }

    /// The version-00 header value, in a stack buffer.
    pub fn header(&self) -> Hex<{ Self::LEN }> {
        let mut out = [b'-'; Self::LEN];
        out[0] = b'0';
        out[1] = b'0';
        encode(&self.trace_id.0, &mut out[3..35]);
        encode(&self.parent_id.0, &mut out[36..52]);
        encode(&[self.flags], &mut out[53..55]);
        Hex(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_reads_and_writes_back() {
        let parent = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            parent.trace_id.hex().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id.hex().as_str(), "00f067aa0ba902b7");
        assert!(parent.sampled());
        assert_eq!(parent.header().as_str(), EXAMPLE);
    }

    #[test]
    fn headers_that_break_the_rules_are_ignored() {
        for bad in [
            "",
            "00",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_for_its_first_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next";
        let parent = TraceParent::parse(later.as_bytes()).unwrap();
        assert!(!parent.sampled());
        assert_eq!(
            parent.header().as_str(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    #[test]
    fn random_ids_are_never_zero_and_differ() {
        let (a, b) = (TraceId::random(), TraceId::random());
        assert_ne!(a, b);
        assert_ne!(a.0, [0; 16]);
        assert_ne!(SpanId::random().0, [0; 8]);
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags() {
        let parent = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        let span = SpanId([1, 2, 3, 4, 5, 6, 7, 8]);
        let child = parent.child_of(span);
        assert_eq!(
            child.header().as_str(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    proptest! {
        #[test]
        fn any_valid_header_round_trips(
            trace in any::<[u8; 16]>().prop_filter("non-zero", |t| *t != [0; 16]),
            span in any::<[u8; 8]>().prop_filter("non-zero", |s| *s != [0; 8]),
            flags in any::<u8>(),
        ) {
            let parent = TraceParent { trace_id: TraceId(trace), parent_id: SpanId(span), flags };
            let header = parent.header();
            prop_assert_eq!(header.as_str().len(), TraceParent::LEN);
            prop_assert_eq!(TraceParent::parse(header.as_str().as_bytes()), Some(parent));
        }

        #[test]
        fn arbitrary_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(parent) = TraceParent::parse(&value) {
                prop_assert_ne!(parent.trace_id.0, [0; 16]);
                prop_assert_ne!(parent.parent_id.0, [0; 8]);
            }
        }
    }
}
