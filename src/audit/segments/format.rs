//! The bytes of a segment's log. A log is [`LOG_MAGIC`] and then frames, one per group
//! commit: `len: u32`, `check: u64` (XXH3-64 of the payload), the payload; integers little
//! endian. A payload is a record count, the records, and an optional checkpoint. A record is
//! its chain (`instance`, `seq`), its previous hash and hash, and the entry's canonical
//! bytes, the ones its hash covers, so a record is read back without any other encoding.
//!
//! A frame that does not hold (its length runs past the file, or its check fails) ends what
//! can be read. At the end of the newest log, with nothing but zeros after it, that is a
//! commit that never finished, and so was never acknowledged; anywhere else it is damage.

use crate::audit::record::{AuditEntry, Chained, Checkpoint, DecodeError, EntryView};
use xxhash_rust::xxh3::xxh3_64;

/// The mark a log starts with.
pub const LOG_MAGIC: [u8; 8] = *b"LTAUDLG1";
const HEAD: usize = 12;
/// No commit is this large (a group is at most `audit.max_batch` records of bounded size):
/// a length beyond it is damage.
const MOST_FRAME: usize = 1 << 30;

/// One record of a frame, borrowed from the log's bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub instance: &'a str,
    pub seq: i64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub canonical: &'a [u8],
    /// Where the record's bytes start in the log, and how many there are: an index entry
    /// reads the record back with these alone ([`record_at`]).
    pub offset: u64,
    pub len: u32,
}

impl RecordRef<'_> {
    pub fn chained(&self) -> Result<Chained, DecodeError> {
        Ok(Chained {
            instance: self.instance.to_owned(),
            seq: self.seq,
            prev_hash: self.prev_hash,
            hash: self.hash,
            entry: AuditEntry::from_canonical(self.canonical)?,
        })
    }

    pub fn view(&self) -> Result<EntryView<'_>, DecodeError> {
        EntryView::parse(self.canonical)
    }
}

/// One group commit, read back.
#[derive(Debug)]
pub struct FrameRef<'a> {
    pub records: Vec<RecordRef<'a>>,
    pub checkpoint: Option<Checkpoint>,
}

/// Why reading a log stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("not a segment log (its first bytes are not the log's mark)")]
    Magic,
    #[error("the frame at byte {at} is incomplete or fails its check: {why}")]
    Frame { at: u64, why: String },
}

impl Damage {
    /// Whether this is what a commit cut short by a crash leaves: a last frame, with
    /// nothing after it but zeros (a crash can leave a file's new end zeroed), never
    /// acknowledged, so dropping it loses nothing. Its length runs past the end, or every
    /// byte after where it says it ends is zero.
    pub fn torn_end(&self, bytes: &[u8]) -> bool {
        match self {
            Damage::Magic => bytes.len() < LOG_MAGIC.len() && LOG_MAGIC.starts_with(bytes),
            Damage::Frame { at, .. } => {
                let rest = &bytes[(*at as usize).min(bytes.len())..];
                if rest.len() < HEAD {
                    return true;
                }
                let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                match rest.get(HEAD.saturating_add(len)..) {
                    None => true,
                    Some(after) => after.iter().all(|b| *b == 0),
                }
            }
        }
    }
}

/// The bytes of a log up to the end of its frames: its mark, then frame after frame, until
/// the file ends or a frame's head is zeros. A torn frame is kept as read, for the walk to
/// recognise.
pub fn read_used(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::io::BufReader::with_capacity(256 << 10, std::fs::File::open(path)?);
    let mut out = Vec::with_capacity(1 << 20);
    let mut magic = [0; LOG_MAGIC.len()];
    let n = read_up_to(&mut file, &mut magic)?;
    out.extend_from_slice(&magic[..n]);
    loop {
        let mut head = [0; HEAD];
        let n = read_up_to(&mut file, &mut head)?;
        if n == 0 || head == [0; HEAD] {
            return Ok(out);
        }
        out.extend_from_slice(&head[..n]);
        if n < HEAD {
            return Ok(out);
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let start = out.len();
        file.by_ref()
            .take(len.min(MOST_FRAME) as u64)
            .read_to_end(&mut out)?;
        if out.len() - start < len {
            return Ok(out);
        }
    }
}

/// Reads until `buf` is full or the file ends; how much was read.
fn read_up_to(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub(super) fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(super) fn put_checkpoint(out: &mut Vec<u8>, c: &Checkpoint) {
    put_short(out, c.instance.as_bytes());
    out.extend_from_slice(&c.seq.to_le_bytes());
    out.extend_from_slice(&c.hash);
    out.extend_from_slice(&c.time_ms.to_le_bytes());
    put_short(out, c.key_id.as_bytes());
    put_short(out, &c.signature);
}

/// Appends one frame holding `records` and `checkpoint` to `out`, and returns where each
/// record starts in `out` and its length. Instance names and key ids are short by
/// construction (config checks them), so their `u16` lengths hold.
pub fn encode_frame(
    out: &mut Vec<u8>,
    records: &[Chained],
    checkpoint: Option<&Checkpoint>,
) -> Vec<(usize, u32)> {
    let mut places = Vec::with_capacity(records.len());
    let start = out.len();
    out.extend_from_slice(&[0; HEAD]);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let at = out.len();
        put_short(out, r.instance.as_bytes());
        out.extend_from_slice(&r.seq.to_le_bytes());
        out.extend_from_slice(&r.prev_hash);
        out.extend_from_slice(&r.hash);
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        r.entry.write_canonical(out);
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        places.push((at, (out.len() - at) as u32));
    }
    match checkpoint {
        Some(c) => {
            out.push(1);
            put_checkpoint(out, c);
        }
        None => out.push(0),
    }
    let payload = out.len() - start - HEAD;
    let check = xxh3_64(&out[start + HEAD..]);
    out[start..start + 4].copy_from_slice(&(payload as u32).to_le_bytes());
    out[start + 4..start + HEAD].copy_from_slice(&check.to_le_bytes());
    places
}

/// Reads what this module and the index write; `base` is where `bytes` start in their file.
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
    pub(super) base: u64,
}

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("{n} bytes wanted at {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub(super) fn u16(&mut self) -> Result<usize, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize)
    }

    pub(super) fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }

    pub(super) fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(super) fn hash(&mut self) -> Result<[u8; 32], String> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }

    pub(super) fn text(&mut self) -> Result<&'a str, String> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| "a name is not UTF-8".to_owned())
    }

    fn record(&mut self) -> Result<RecordRef<'a>, String> {
        let offset = self.base + self.at as u64;
        let instance = self.text()?;
        let seq = self.i64()?;
        let prev_hash = self.hash()?;
        let hash = self.hash()?;
        let n = self.u32()?;
        let canonical = self.take(n)?;
        let len = (self.base + self.at as u64 - offset) as u32;
        Ok(RecordRef {
            instance,
            seq,
            prev_hash,
            hash,
            canonical,
            offset,
            len,
        })
    }

    pub(super) fn checkpoint(&mut self) -> Result<Checkpoint, String> {
        Ok(Checkpoint {
            instance: self.text()?.to_owned(),
            seq: self.i64()?,
            hash: self.hash()?,
            time_ms: self.i64()?,
            key_id: self.text()?.to_owned(),
            signature: {
                let n = self.u16()?;
                self.take(n)?.to_vec()
            },
        })
    }
}

/// Reads one record from the bytes [`RecordRef::offset`] and [`RecordRef::len`] name.
/// The frame's check does not cover a record read alone; the record's hash does.
pub fn record_at(bytes: &[u8], offset: u64) -> Result<RecordRef<'_>, String> {
    let mut c = Cursor {
        bytes,
        at: 0,
        base: offset,
    };
    let r = c.record()?;
    if c.at != bytes.len() {
        return Err(format!("{} bytes after the record", bytes.len() - c.at));
    }
    Ok(r)
}

fn payload(bytes: &[u8], base: u64) -> Result<FrameRef<'_>, String> {
    let mut c = Cursor { bytes, at: 0, base };
    let count = c.u32()?;
    if count > bytes.len() / 80 {
        return Err(format!(
            "{count} records cannot fit in {} bytes",
            bytes.len()
        ));
    }
    let records = (0..count)
        .map(|_| c.record())
        .collect::<Result<Vec<_>, _>>()?;
    let checkpoint = match c.take(1)? {
        [0] => None,
        [1] => Some(c.checkpoint()?),
        _ => return Err("the checkpoint flag is neither 0 nor 1".into()),
    };
    if c.at != bytes.len() {
        return Err(format!("{} bytes after the payload", bytes.len() - c.at));
    }
    Ok(FrameRef {
        records,
        checkpoint,
    })
}

/// The frames of a log's bytes, in order, each with the offset just past it; reading stops
/// at the first that does not hold, with the [`Damage`].
pub struct Frames<'a> {
    bytes: &'a [u8],
    at: usize,
    stopped: bool,
}

impl<'a> Frames<'a> {
    pub fn new(bytes: &'a [u8]) -> Frames<'a> {
        Frames {
            bytes,
            at: 0,
            stopped: false,
        }
    }

    /// Where the frames read so far end.
    pub fn end(&self) -> u64 {
        self.at as u64
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<FrameRef<'a>, Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        if self.at == 0 {
            if !self.bytes.starts_with(&LOG_MAGIC) {
                self.stopped = true;
                return Some(Err(Damage::Magic));
            }
            self.at = LOG_MAGIC.len();
        }
        let rest = &self.bytes[self.at..];
        if rest.is_empty() {
            return None;
        }
        let at = self.at as u64;
        let fail = |why: String| Some(Err(Damage::Frame { at, why }));
        self.stopped = true;
        if rest.len() < HEAD {
            return fail(format!("{} bytes, less than a frame's head", rest.len()));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let check = u64::from_le_bytes(rest[4..HEAD].try_into().expect("8 bytes"));
        if len > MOST_FRAME || HEAD + len > rest.len() {
            return fail(format!("a length of {len} runs past the end"));
        }
        let body = &rest[HEAD..HEAD + len];
        if xxh3_64(body) != check {
            return fail("its check does not match its bytes".into());
        }
        match payload(body, at + HEAD as u64) {
            Ok(frame) => {
                self.stopped = false;
                self.at += HEAD + len;
                Some(Ok(frame))
            }
            Err(why) => fail(why),
        }
    }
}

/// One frame, decoded: its records and its checkpoint.
pub type Decoded = (Vec<Chained>, Option<Checkpoint>);

/// Every frame of a log file, decoded, for inspection (and the tests that tamper with a
/// store). A torn end is left out; other damage is an error.
pub fn read_log(path: &std::path::Path) -> Result<Vec<Decoded>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for frame in Frames::new(&bytes) {
        let frame = match frame {
            Ok(f) => f,
            Err(d) if d.torn_end(&bytes) => break,
            Err(d) => return Err(d.to_string()),
        };
        let records = frame
            .records
            .iter()
            .map(|r| r.chained().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        out.push((records, frame.checkpoint));
    }
    Ok(out)
}

/// Writes `frames` as the whole log at `path`, replacing it.
pub fn write_log(path: &std::path::Path, frames: &[Decoded]) -> Result<(), String> {
    let mut bytes = LOG_MAGIC.to_vec();
    for (records, checkpoint) in frames {
        encode_frame(&mut bytes, records, checkpoint.as_ref());
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::testing::chain;
    use crate::audit::record::{GENESIS, Signer};

    fn log(frames: &[(Vec<Chained>, Option<Checkpoint>)]) -> Vec<u8> {
        let mut out = LOG_MAGIC.to_vec();
        for (records, cp) in frames {
            encode_frame(&mut out, records, cp.as_ref());
        }
        out
    }

    #[test]
    fn frames_read_back_as_written_and_each_record_alone_from_its_offset() {
        let records = chain("gw", 1, 5, GENESIS);
        let signer = Signer::from_seed("s1", &[7; 32]).expect("seed");
        let cp = signer.sign("gw", 5, &records[4].hash, 1);
        let bytes = log(&[
            (records[..2].to_vec(), None),
            (records[2..].to_vec(), Some(cp.clone())),
        ]);
        let mut frames = Frames::new(&bytes);
        let read: Vec<FrameRef<'_>> = frames.by_ref().collect::<Result<_, _>>().expect("whole");
        assert_eq!(frames.end(), bytes.len() as u64);
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].checkpoint, Some(cp));
        let back: Vec<Chained> = read
            .iter()
            .flat_map(|f| f.records.iter().map(|r| r.chained().expect("decodes")))
            .collect();
        assert_eq!(back, records);
        let r = read[1].records[1];
        let alone = record_at(
            &bytes[r.offset as usize..(r.offset + r.len as u64) as usize],
            r.offset,
        )
        .expect("alone");
        assert_eq!(alone.chained().expect("decodes"), records[3]);
        assert_eq!(
            r.view().expect("view").subject,
            records[3].entry.subject.as_bytes()
        );
    }

    #[test]
    fn a_cut_last_frame_is_a_torn_end_and_a_changed_byte_is_damage() {
        let records = chain("gw", 1, 4, GENESIS);
        let whole = log(&[(records[..2].to_vec(), None), (records[2..].to_vec(), None)]);
        let first_end = {
            let mut f = Frames::new(&whole);
            f.next().expect("one").expect("whole");
            f.end() as usize
        };
        for cut in [first_end + 3, first_end + 20, whole.len() - 1] {
            let bytes = &whole[..cut];
            let mut f = Frames::new(bytes);
            assert!(f.next().expect("first").is_ok());
            let damage = f.next().expect("second").expect_err("cut");
            assert!(damage.torn_end(bytes), "cut at {cut}: {damage}");
            assert_eq!(f.end() as usize, first_end);
        }
        // Zeros after the last whole frame, as a crash can leave: torn as well.
        let mut zeros = whole[..first_end].to_vec();
        zeros.extend_from_slice(&[0; 64]);
        let damage = Frames::new(&zeros)
            .nth(1)
            .expect("second")
            .expect_err("zeros");
        assert!(damage.torn_end(&zeros));
        // A byte changed inside the first frame, with a whole frame after it: damage.
        let mut changed = whole.clone();
        changed[first_end - 40] ^= 1;
        let damage = Frames::new(&changed)
            .next()
            .expect("first")
            .expect_err("changed");
        assert!(!damage.torn_end(&changed), "{damage}");
        assert!(matches!(
            Frames::new(b"not a log").next(),
            Some(Err(Damage::Magic))
        ));
    }
}
