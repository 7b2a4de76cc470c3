namespace Poold.Config;

/// <summary>
/// Reads pgpool.conf syntax exactly as pgpool-II 4.x's flex scanner does (pool_config.l):
/// <code>
///   KEY              {LETTER}{LETTER_OR_DIGIT}*
///   UNQUOTED_STRING  {LETTER}({LETTER_OR_DIGIT}|[-._:/])*
///   STRING           '([^'\n]|\\.)*'              quotes stripped, nothing unescaped
///   INTEGER          {SIGN}?({DIGIT}+|0x{HEXDIGIT}+){UNIT_LETTER}*
///   REAL             {SIGN}?{DIGIT}*"."{DIGIT}*{EXPONENT}?
///   LETTER           [A-Za-z_] and every byte >= 0x80
/// </code>
/// A line is <c>KEY [=] VALUE</c>; <c>#</c> starts a comment outside quotes; spaces, tabs and CR are
/// blanks. The longest token wins, so <c>127.0.0.1</c> lexes as REAL <c>127.0</c> then <c>.0</c>: a
/// syntax error, as in pgpool (addresses must be quoted). Unlike pgpool, which stops at the first bad
/// line, every bad line is reported.
/// </summary>
internal static class ConfLexer
{
    private enum TokenKind
    {
        Key,
        UnquotedString,
        String,
        Integer,
        Real,
        EqualsSign,
        EndOfLine,
        Error,
    }

    private readonly record struct Token(TokenKind Kind, int Start, int Length);

    public static void Parse(string text, string file, List<ConfEntry> entries, List<ConfigDiagnostic> diagnostics)
    {
        var line = 1;
        var pos = 0;
        while (pos <= text.Length)
        {
            var end = text.IndexOf('\n', pos);
            if (end < 0)
            {
                end = text.Length;
            }

            ParseLine(text.AsSpan(pos, end - pos), file, line, entries, diagnostics);
            pos = end + 1;
            line++;
        }
    }

    private static void ParseLine(ReadOnlySpan<char> line, string file, int lineNo, List<ConfEntry> entries, List<ConfigDiagnostic> diagnostics)
    {
        // No name, value or path can hold a NUL (a file name with one makes .NET's file API throw ArgumentException).
        var nul = line.IndexOf('\0');
        if (nul >= 0)
        {
            diagnostics.Add(ConfigDiagnostic.Error(file, lineNo, $"syntax error: NUL byte at column {nul + 1}"));
            return;
        }

        var pos = 0;
        var key = Next(line, ref pos);
        if (key.Kind == TokenKind.EndOfLine)
        {
            return;
        }

        if (key.Kind != TokenKind.Key)
        {
            diagnostics.Add(SyntaxError(file, lineNo, line, key, "expected a parameter name"));
            return;
        }

        var value = Next(line, ref pos);
        if (value.Kind == TokenKind.EqualsSign)
        {
            value = Next(line, ref pos);
        }

        var name = line.Slice(key.Start, key.Length).ToString();
        var secret = HoldsSecret(name);
        if (value.Kind is not (TokenKind.Key or TokenKind.UnquotedString or TokenKind.String or TokenKind.Integer or TokenKind.Real))
        {
            diagnostics.Add(SyntaxError(file, lineNo, line, value, $"expected a value for \"{name}\"", secret));
            return;
        }

        var rest = Next(line, ref pos);
        if (rest.Kind != TokenKind.EndOfLine)
        {
            diagnostics.Add(SyntaxError(file, lineNo, line, rest,
                "expected the end of the line after the value (quote values that contain '.' after a digit, spaces or other symbols)", secret));
            return;
        }

        var quoted = value.Kind == TokenKind.String;
        var text = quoted ? line.Slice(value.Start + 1, value.Length - 2) : line.Slice(value.Start, value.Length);
        entries.Add(new ConfEntry(line.Slice(key.Start, key.Length).ToString(), text.ToString(), quoted, file, lineNo));
    }

    /// <summary>
    /// A syntax error names the token it stopped at, except in the value of a parameter that holds a secret, which
    /// must not reach a log or a terminal: there it says where, not what.
    /// </summary>
    private static ConfigDiagnostic SyntaxError(string file, int lineNo, ReadOnlySpan<char> line, Token at, string expectation, bool secret = false)
    {
        var near = at.Kind == TokenKind.EndOfLine ? "end of line"
            : secret ? $"column {at.Start + 1} (the value of a secret parameter is not shown)"
            : $"\"{line.Slice(at.Start, at.Length)}\"";
        return ConfigDiagnostic.Error(file, lineNo, $"syntax error near {near}: {expectation}");
    }

    /// <summary>Parameters whose value may be a password or key: any name containing password, passwd, secret or key.</summary>
    internal static bool HoldsSecret(string name) =>
        name.Contains("password", StringComparison.OrdinalIgnoreCase) || name.Contains("passwd", StringComparison.OrdinalIgnoreCase)
        || name.Contains("secret", StringComparison.OrdinalIgnoreCase) || name.Contains("key", StringComparison.OrdinalIgnoreCase);

    private static Token Next(ReadOnlySpan<char> s, ref int pos)
    {
        while (pos < s.Length && s[pos] is ' ' or '\t' or '\r')
        {
            pos++;
        }

        if (pos >= s.Length || s[pos] == '#')
        {
            pos = s.Length;
            return new Token(TokenKind.EndOfLine, pos, 0);
        }

        var start = pos;
        var c = s[pos];
        if (c == '=')
        {
            pos++;
            return new Token(TokenKind.EqualsSign, start, 1);
        }

        if (c == '\'')
        {
            var i = pos + 1;
            while (i < s.Length && s[i] != '\'')
            {
                // A backslash takes the next character with it, so \' does not end the string.
                i += s[i] == '\\' && i + 1 < s.Length ? 2 : 1;
            }

            if (i >= s.Length)
            {
                pos++;
                return new Token(TokenKind.Error, start, 1);
            }

            pos = i + 1;
            return new Token(TokenKind.String, start, pos - start);
        }

        if (IsLetter(c))
        {
            var i = pos + 1;
            var onlyKeyChars = true;
            while (i < s.Length && (IsLetterOrDigit(s[i]) || s[i] is '-' or '.' or '_' or ':' or '/'))
            {
                onlyKeyChars &= IsLetterOrDigit(s[i]);
                i++;
            }

            pos = i;
            return new Token(onlyKeyChars ? TokenKind.Key : TokenKind.UnquotedString, start, i - start);
        }

        var integerEnd = MatchInteger(s, pos);
        var realEnd = MatchReal(s, pos);
        if (integerEnd < 0 && realEnd < 0)
        {
            pos++;
            return new Token(TokenKind.Error, start, 1);
        }

        // Longest match wins; on a tie flex takes the rule listed first (INTEGER).
        if (integerEnd >= realEnd)
        {
            pos = integerEnd;
            return new Token(TokenKind.Integer, start, integerEnd - start);
        }

        pos = realEnd;
        return new Token(TokenKind.Real, start, realEnd - start);
    }

    /// <summary>End of <c>{SIGN}?({DIGIT}+|0x{HEXDIGIT}+)[A-Za-z]*</c> at <paramref name="pos"/>, or -1.</summary>
    private static int MatchInteger(ReadOnlySpan<char> s, int pos)
    {
        var i = SkipSign(s, pos);
        int digitsEnd;
        if (i + 2 < s.Length && s[i] == '0' && s[i + 1] == 'x' && char.IsAsciiHexDigit(s[i + 2]))
        {
            digitsEnd = i + 2;
            while (digitsEnd < s.Length && char.IsAsciiHexDigit(s[digitsEnd]))
            {
                digitsEnd++;
            }
        }
        else
        {
            digitsEnd = i;
            while (digitsEnd < s.Length && char.IsAsciiDigit(s[digitsEnd]))
            {
                digitsEnd++;
            }

            if (digitsEnd == i)
            {
                return -1;
            }
        }

        while (digitsEnd < s.Length && char.IsAsciiLetter(s[digitsEnd]))
        {
            digitsEnd++;
        }

        return digitsEnd;
    }

    /// <summary>End of <c>{SIGN}?{DIGIT}*"."{DIGIT}*([Ee]{SIGN}?{DIGIT}+)?</c> at <paramref name="pos"/>, or -1.</summary>
    private static int MatchReal(ReadOnlySpan<char> s, int pos)
    {
        var i = SkipSign(s, pos);
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            i++;
        }

        if (i >= s.Length || s[i] != '.')
        {
            return -1;
        }

        i++;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            i++;
        }

        if (i < s.Length && s[i] is 'e' or 'E')
        {
            var e = SkipSign(s, i + 1);
            var digits = e;
            while (digits < s.Length && char.IsAsciiDigit(s[digits]))
            {
                digits++;
            }

            if (digits > e)
            {
                i = digits;
            }
        }

        return i;
    }

    private static int SkipSign(ReadOnlySpan<char> s, int pos) => pos < s.Length && s[pos] is '+' or '-' ? pos + 1 : pos;

    private static bool IsLetter(char c) => char.IsAsciiLetter(c) || c == '_' || c >= '\u0080';

    private static bool IsLetterOrDigit(char c) => IsLetter(c) || char.IsAsciiDigit(c);
}
