//! The reader under the schema walk ([`crate::schema::walk`]): a [`Cursor`] with no trust in
//! declared lengths. Every array's element count is bounded by the bytes left (every element
//! takes at least one byte), every string is checked UTF-8 (the decoder reads strings as
//! `StrBytes` and refuses those that are not), and tagged fields are checked at their exact
//! declared size. Nothing is allocated.

use crate::scan::{Cursor, ScanError};

/// A [`Cursor`] that knows the length of what it walks (for array bounds), whether the version
/// is flexible, and what it walks (for the walks of tagged-field values).
pub(crate) struct Walk<'a> {
    pub(crate) c: Cursor<'a>,
    len: usize,
    pub(crate) flexible: bool,
    message: &'static str,
    version: i16,
}

impl<'a> Walk<'a> {
    pub(crate) fn new(b: &'a [u8], message: &'static str, version: i16, flexible: bool) -> Self {
        Self { c: Cursor::new(b, message, version), len: b.len(), flexible, message, version }
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), ScanError> {
        self.c.take(n).map(drop)
    }

    pub(crate) fn i8(&mut self) -> Result<i8, ScanError> {
        Ok(self.c.take(1)?[0] as i8)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, ScanError> {
        Ok(self.i8()? != 0)
    }

    pub(crate) fn uuid(&mut self) -> Result<[u8; 16], ScanError> {
        self.c.uuid()
    }

    /// A string that may be null; UTF-8, as the decoder requires.
    pub(crate) fn nullable_string(&mut self) -> Result<Option<&'a str>, ScanError> {
        self.c.nullable_string(self.flexible)
    }

    pub(crate) fn string(&mut self) -> Result<&'a str, ScanError> {
        self.nullable_string()?.ok_or_else(|| self.c.err("null string"))
    }

    pub(crate) fn nullable_bytes(&mut self) -> Result<(), ScanError> {
        self.c.nullable_bytes(self.flexible).map(drop)
    }

    pub(crate) fn bytes(&mut self) -> Result<(), ScanError> {
        match self.c.nullable_bytes(self.flexible)? {
            Some(_) => Ok(()),
            None => Err(self.c.err("null bytes")),
        }
    }

    /// An array's element count, or None for a null array; like [`Cursor::array_len`], never
    /// more elements than bytes left (every element takes at least one byte).
    pub(crate) fn nullable_array(&mut self) -> Result<Option<usize>, ScanError> {
        match self.c.length(self.flexible, false)? {
            Some(n) if n > self.len - self.c.pos() => Err(self.c.err("array longer than the message")),
            n => Ok(n),
        }
    }

    pub(crate) fn array(&mut self) -> Result<usize, ScanError> {
        self.nullable_array()?.ok_or_else(|| self.c.err("null array"))
    }

    /// Tagged fields (flexible versions only). `known` walks the value of each tag the decoder
    /// reads as a field and says Ok(true), or Ok(false) for a tag the decoder keeps as unknown
    /// bytes. A known field must fill its declared size exactly: the decoder reads it from the
    /// stream whatever size is declared, so a size that disagrees would shift the decoder off
    /// this walk. Its arrays are bounded by its declared size.
    pub(crate) fn tags_with(
        &mut self,
        mut known: impl FnMut(u32, &mut Walk<'a>) -> Result<bool, ScanError>,
    ) -> Result<(), ScanError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.c.uvarint()?;
        for _ in 0..count {
            let tag = self.c.uvarint()?;
            let size = self.c.uvarint()? as usize;
            let start = self.c.pos();
            let value = self.c.take(size)?;
            let mut field = Walk::new(value, self.message, self.version, true);
            let at = |mut e: ScanError| {
                e.offset += start;
                e
            };
            // A known field that runs out of bytes is shorter than the decoder would read.
            let short = |mut e: ScanError| {
                if e.what == "truncated" {
                    e.what = "tagged field size disagrees with its field";
                }
                at(e)
            };
            if known(tag, &mut field).map_err(short)? && field.c.pos() != size {
                return Err(at(field.c.err("tagged field size disagrees with its field")));
            }
        }
        Ok(())
    }
}
