using System.Globalization;

namespace Poold.Config;

/// <summary>Turns the text of a value into a typed value; returns null on success, else what is wrong.</summary>
internal delegate string? ValueParser<T>(string text, out T value);

/// <summary>The units a numeric parameter accepts, as PostgreSQL's GUC code (which pgpool-II copies) spells them.</summary>
internal enum UnitKind
{
    None,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Bytes,
    Kilobytes,
}

/// <summary>Value syntaxes shared by pgpool.conf parameters: booleans, integers with units, reals, enums and lists.</summary>
internal static class ValueParsers
{
    private static readonly (string Unit, double Micros)[] TimeUnits =
        [("us", 1), ("ms", 1_000), ("s", 1_000_000), ("min", 60_000_000), ("h", 3_600_000_000), ("d", 86_400_000_000)];

    private static readonly (string Unit, double Bytes)[] MemoryUnits =
        [("B", 1), ("kB", 1024), ("MB", 1024 * 1024), ("GB", 1024 * 1024 * 1024), ("TB", 1024d * 1024 * 1024 * 1024)];

    /// <summary>PostgreSQL's parse_bool: on/off, true/false, yes/no, 1/0 and unambiguous prefixes, any case.</summary>
    public static string? Bool(string text, out bool value)
    {
        var t = text.Trim().ToLowerInvariant();
        value = false;
        if (t.Length == 0)
        {
            return "a boolean (on/off, true/false, yes/no, 1/0) is required";
        }

        if (t is "1" || IsPrefixOf(t, "true", 1) || IsPrefixOf(t, "yes", 1) || IsPrefixOf(t, "on", 2))
        {
            value = true;
            return null;
        }

        if (t is "0" || IsPrefixOf(t, "false", 1) || IsPrefixOf(t, "no", 1) || IsPrefixOf(t, "off", 2))
        {
            return null;
        }

        return $"\"{text}\" is not a boolean (on/off, true/false, yes/no, 1/0)";
    }

    private static bool IsPrefixOf(string t, string word, int minLength) =>
        t.Length >= minLength && t.Length <= word.Length && word.StartsWith(t, StringComparison.Ordinal);

    /// <summary>
    /// An integer as strtol(…, 0) reads it (decimal, <c>0x</c> hex, leading-zero octal), optionally followed by a unit.
    /// The result is in <paramref name="baseUnit"/>, rounded half to even as PostgreSQL's rint does (1500ms → 2 s).
    /// </summary>
    public static string? Integer(string text, UnitKind baseUnit, long min, long max, out long value)
    {
        value = 0;
        var t = text.Trim();
        var i = 0;
        var negative = false;
        if (i < t.Length && t[i] is '+' or '-')
        {
            negative = t[i] == '-';
            i++;
        }

        var radix = 10;
        if (i + 1 < t.Length && t[i] == '0' && t[i + 1] is 'x' or 'X')
        {
            radix = 16;
            i += 2;
        }
        else if (i + 1 < t.Length && t[i] == '0' && char.IsAsciiDigit(t[i + 1]))
        {
            radix = 8;
            i++;
        }

        var digitsStart = i;
        decimal number = 0;
        while (i < t.Length && DigitValue(t[i]) is var d && d >= 0 && d < radix)
        {
            number = number * radix + d;
            if (number > long.MaxValue)
            {
                return $"\"{text}\" is out of range";
            }

            i++;
        }

        if (i == digitsStart)
        {
            return $"\"{text}\" is not an integer";
        }

        if (negative)
        {
            number = -number;
        }

        var unit = t[i..].TrimStart();
        if (unit.Length > 0 && !char.IsAsciiLetter(unit[0]))
        {
            return $"\"{text}\" is not an integer";
        }

        if (unit.Length > 0)
        {
            if (!TryConvertUnit((double)number, unit, baseUnit, out var converted, out var error))
            {
                return $"\"{text}\": {error}";
            }

            number = (decimal)Math.Round(converted, MidpointRounding.ToEven);
        }

        if (number < min || number > max)
        {
            return $"{number.ToString(CultureInfo.InvariantCulture)} is outside the valid range {min}..{max}";
        }

        value = (long)number;
        return null;
    }

    private static int DigitValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    private static bool TryConvertUnit(double number, string unit, UnitKind baseUnit, out double converted, out string error)
    {
        converted = 0;
        var table = baseUnit switch
        {
            UnitKind.Microseconds or UnitKind.Milliseconds or UnitKind.Seconds or UnitKind.Minutes => TimeUnits,
            UnitKind.Bytes or UnitKind.Kilobytes => MemoryUnits,
            _ => null,
        };
        if (table is null)
        {
            error = "this parameter takes no unit";
            return false;
        }

        var baseFactor = baseUnit switch
        {
            UnitKind.Microseconds => 1,
            UnitKind.Milliseconds => 1_000,
            UnitKind.Seconds => 1_000_000,
            UnitKind.Minutes => 60_000_000,
            UnitKind.Bytes => 1,
            _ => 1024,
        };
        foreach (var (name, factor) in table)
        {
            if (name.Equals(unit, StringComparison.Ordinal))
            {
                converted = number * factor / baseFactor;
                error = "";
                return true;
            }
        }

        error = $"invalid unit \"{unit}\"; valid units are {string.Join(", ", table.Select(u => u.Unit))}";
        return false;
    }

    public static string? Real(string text, double min, double max, out double value)
    {
        if (!double.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out value) || !double.IsFinite(value))
        {
            return $"\"{text}\" is not a number";
        }

        if (value < min || value > max)
        {
            return $"{value.ToString(CultureInfo.InvariantCulture)} is outside the valid range {min.ToString(CultureInfo.InvariantCulture)}..{max.ToString(CultureInfo.InvariantCulture)}";
        }

        return null;
    }

    /// <summary>Splits on <paramref name="separator"/>, trims each item, drops empty items.</summary>
    public static IReadOnlyList<string> List(string text, char separator) =>
        text.Split(separator, StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
}
