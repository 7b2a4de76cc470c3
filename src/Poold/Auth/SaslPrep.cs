using System.Globalization;
using System.Text;

namespace Poold.Auth;

/// <summary>
/// SASLprep (RFC 4013) of a SCRAM password, as PostgreSQL applies it (src/common/saslprep.c): non-ASCII spaces map
/// to U+0020, "commonly mapped to nothing" characters are removed, NFKC normalisation, then prohibited output and
/// bidirectional rules are checked. When the password cannot be prepared, PostgreSQL (server and libpq alike) uses
/// the raw bytes, and so does this.
/// </summary>
internal static class SaslPrep
{
    public static byte[] Prepare(string password)
    {
        if (IsPrintableAscii(password))
        {
            return Encoding.UTF8.GetBytes(password);
        }

        var prepared = TryPrepare(password);
        return Encoding.UTF8.GetBytes(prepared ?? password);
    }

    private static bool IsPrintableAscii(string s)
    {
        foreach (var c in s)
        {
            if (c < 0x20 || c > 0x7E)
            {
                return false;
            }
        }

        return true;
    }

    private static string? TryPrepare(string password)
    {
        var mapped = new StringBuilder(password.Length);
        foreach (var c in password)
        {
            if (IsNonAsciiSpace(c))
            {
                mapped.Append(' ');
            }
            else if (!IsMappedToNothing(c))
            {
                mapped.Append(c);
            }
        }

        string normalized;
        try
        {
            normalized = mapped.ToString().Normalize(NormalizationForm.FormKC);
        }
        catch (ArgumentException)
        {
            return null;
        }

        if (normalized.Length == 0)
        {
            return null;
        }

        var hasRandAL = false;
        var hasL = false;
        var runes = normalized.EnumerateRunes().ToList();
        foreach (var rune in runes)
        {
            if (IsProhibited(rune))
            {
                return null;
            }

            hasRandAL |= IsRandAL(rune);
            hasL |= IsL(rune);
        }

        // RFC 3454 §6: a string with RandALCat characters has no LCat characters and starts and ends with RandALCat.
        if (hasRandAL && (hasL || !IsRandAL(runes[0]) || !IsRandAL(runes[^1])))
        {
            return null;
        }

        return normalized;
    }

    /// <summary>RFC 3454 C.1.2.</summary>
    private static bool IsNonAsciiSpace(char c) =>
        c is '\u00A0' or '\u1680' or (>= '\u2000' and <= '\u200B') or '\u202F' or '\u205F' or '\u3000';

    /// <summary>RFC 3454 B.1.</summary>
    private static bool IsMappedToNothing(char c) =>
        c is '\u00AD' or '\u034F' or '\u1806' or (>= '\u180B' and <= '\u180D') or '\u200C' or '\u200D' or '\u2060'
            or (>= '\uFE00' and <= '\uFE0F') or '\uFEFF';

    /// <summary>RFC 4013 §2.3: C.1.2, C.2.1, C.2.2, C.3 to C.9.</summary>
    private static bool IsProhibited(Rune r)
    {
        var v = r.Value;
        return v < 0x20 || v == 0x7F || (v >= 0x80 && v <= 0x9F)
            || (v <= 0xFFFF && IsNonAsciiSpace((char)v))
            || v is 0x06DD or 0x070F or 0x180E or 0x200C or 0x200D or 0x2028 or 0x2029 or 0x2060 or 0x2061 or 0x2062 or 0x2063
            || (v >= 0x206A && v <= 0x206F) || v == 0xFEFF || (v >= 0xFFF9 && v <= 0xFFFC) || (v >= 0x1D173 && v <= 0x1D17A)
            || (v >= 0xE000 && v <= 0xF8FF) || (v >= 0xF0000 && v <= 0xFFFFD) || (v >= 0x100000 && v <= 0x10FFFD)
            || (v >= 0xFDD0 && v <= 0xFDEF) || (v & 0xFFFE) == 0xFFFE
            || (v >= 0xD800 && v <= 0xDFFF)
            || v is 0xFFFD or 0x2FF0 or (>= 0x2FF1 and <= 0x2FFB)
            || v is 0x0340 or 0x0341 or 0x200E or 0x200F or (>= 0x202A and <= 0x202E) or (>= 0x206A and <= 0x206F)
            || v == 0xE0001 || (v >= 0xE0020 && v <= 0xE007F);
    }

    private static bool IsRandAL(Rune r) =>
        Rune.GetUnicodeCategory(r) == UnicodeCategory.OtherLetter && (r.Value is >= 0x0590 and <= 0x08FF or >= 0xFB1D and <= 0xFDFF or >= 0xFE70 and <= 0xFEFF);

    private static bool IsL(Rune r) => Rune.IsLetter(r) && !IsRandAL(r);
}
