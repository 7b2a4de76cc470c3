namespace Poold.Routing;

/// <summary>The kinds of token routing needs to tell apart.</summary>
internal enum TokenKind : byte
{
    End,

    /// <summary>A keyword or unquoted identifier (ASCII letters are matched case-insensitively).</summary>
    Word,

    /// <summary><c>"identifier"</c> or <c>U&amp;"identifier"</c>.</summary>
    QuotedIdentifier,

    /// <summary><c>'…'</c>, <c>E'…'</c>, <c>U&amp;'…'</c>, <c>B'…'</c>, <c>X'…'</c>, <c>N'…'</c>, or a dollar-quoted body.</summary>
    String,

    Number,

    /// <summary><c>$1</c>.</summary>
    Parameter,

    OpenParen,
    CloseParen,
    Comma,
    Semicolon,
    Dot,

    /// <summary>Any other operator or punctuation, one run of operator characters.</summary>
    Operator,
}

/// <summary>A token: its kind and where it is in the statement text.</summary>
internal readonly record struct SqlToken(TokenKind Kind, int Start, int Length)
{
    public ReadOnlySpan<byte> Text(ReadOnlySpan<byte> sql) => sql.Slice(Start, Length);

    /// <summary>True for a <see cref="TokenKind.Word"/> equal to <paramref name="upper"/> (an upper-case ASCII keyword).</summary>
    public bool Is(ReadOnlySpan<byte> sql, string upper)
    {
        if (Kind != TokenKind.Word || Length != upper.Length)
        {
            return false;
        }

        var text = sql.Slice(Start, Length);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c is >= (byte)'a' and <= (byte)'z')
            {
                c -= 32;
            }

            if (c != upper[i])
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>
/// A tokenizer of PostgreSQL SQL over UTF-8 bytes, as PostgreSQL's scanner splits text (scan.l): whitespace and
/// comments (<c>--</c>, nested <c>/* */</c>) are skipped, strings in every form (standard with <c>''</c>, <c>E''</c>
/// with backslash escapes, <c>U&amp;''</c>, bit and hex strings, dollar quoting with tags) and quoted identifiers are
/// single tokens, so keywords inside them are never seen. Allocates nothing.
/// </summary>
internal ref struct SqlLexer
{
    private readonly ReadOnlySpan<byte> _sql;
    private int _position;

    public SqlLexer(ReadOnlySpan<byte> sql)
    {
        _sql = sql;
        _position = 0;
    }

    /// <summary>True once a comment has been skipped.</summary>
    public bool SawComment { get; private set; }

    /// <summary>Where the next token starts scanning (after the previous token).</summary>
    public readonly int Position => _position;

    /// <summary>Reads the next token; <see cref="TokenKind.End"/> at the end of the text (also for an unterminated literal).</summary>
    public SqlToken Next()
    {
        SkipSpaceAndComments();
        var start = _position;
        if (_position >= _sql.Length)
        {
            return new SqlToken(TokenKind.End, _sql.Length, 0);
        }

        var c = _sql[_position];
        switch (c)
        {
            case (byte)'(':
                _position++;
                return new SqlToken(TokenKind.OpenParen, start, 1);
            case (byte)')':
                _position++;
                return new SqlToken(TokenKind.CloseParen, start, 1);
            case (byte)',':
                _position++;
                return new SqlToken(TokenKind.Comma, start, 1);
            case (byte)';':
                _position++;
                return new SqlToken(TokenKind.Semicolon, start, 1);
            case (byte)'\'':
                ScanQuoted((byte)'\'', backslashEscapes: false);
                return new SqlToken(TokenKind.String, start, _position - start);
            case (byte)'"':
                ScanQuoted((byte)'"', backslashEscapes: false);
                return new SqlToken(TokenKind.QuotedIdentifier, start, _position - start);
            case (byte)'$':
                return ScanDollar(start);
            case (byte)'.' when _position + 1 < _sql.Length && IsDigit(_sql[_position + 1]):
                ScanNumber();
                return new SqlToken(TokenKind.Number, start, _position - start);
            case (byte)'.':
                _position++;
                return new SqlToken(TokenKind.Dot, start, 1);
        }

        if (IsDigit(c))
        {
            ScanNumber();
            return new SqlToken(TokenKind.Number, start, _position - start);
        }

        if (IsIdentifierStart(c))
        {
            return ScanWordOrPrefixedLiteral(start);
        }

        // Operators: one run of operator characters, stopping where a comment begins.
        _position++;
        while (_position < _sql.Length && IsOperatorChar(_sql[_position]) && !StartsComment(_position))
        {
            _position++;
        }

        return new SqlToken(TokenKind.Operator, start, _position - start);
    }

    private SqlToken ScanWordOrPrefixedLiteral(int start)
    {
        var c = (byte)(_sql[_position] | 0x20);
        var next = _position + 1 < _sql.Length ? _sql[_position + 1] : (byte)0;
        if (next == (byte)'\'')
        {
            switch (c)
            {
                case (byte)'e':
                    _position++;
                    ScanQuoted((byte)'\'', backslashEscapes: true);
                    return new SqlToken(TokenKind.String, start, _position - start);
                case (byte)'b' or (byte)'x' or (byte)'n':
                    _position++;
                    ScanQuoted((byte)'\'', backslashEscapes: false);
                    return new SqlToken(TokenKind.String, start, _position - start);
            }
        }

        if (c == (byte)'u' && next == (byte)'&' && _position + 2 < _sql.Length && _sql[_position + 2] is (byte)'\'' or (byte)'"')
        {
            var quote = _sql[_position + 2];
            _position += 2;
            ScanQuoted(quote, backslashEscapes: false);
            return new SqlToken(quote == (byte)'"' ? TokenKind.QuotedIdentifier : TokenKind.String, start, _position - start);
        }

        _position++;
        while (_position < _sql.Length && IsIdentifierPart(_sql[_position]))
        {
            _position++;
        }

        return new SqlToken(TokenKind.Word, start, _position - start);
    }

    /// <summary><c>$1</c> is a parameter; <c>$$</c> or <c>$tag$</c> opens a dollar-quoted string up to the same tag.</summary>
    private SqlToken ScanDollar(int start)
    {
        var i = _position + 1;
        if (i < _sql.Length && IsDigit(_sql[i]))
        {
            while (i < _sql.Length && IsDigit(_sql[i]))
            {
                i++;
            }

            _position = i;
            return new SqlToken(TokenKind.Parameter, start, i - start);
        }

        while (i < _sql.Length && IsIdentifierPart(_sql[i]) && _sql[i] != (byte)'$')
        {
            i++;
        }

        if (i >= _sql.Length || _sql[i] != (byte)'$')
        {
            _position++;
            return new SqlToken(TokenKind.Operator, start, 1);
        }

        var tag = _sql[start..(i + 1)];
        var close = _sql[(i + 1)..].IndexOf(tag);
        _position = close < 0 ? _sql.Length : i + 1 + close + tag.Length;
        return new SqlToken(TokenKind.String, start, _position - start);
    }

    private void ScanQuoted(byte quote, bool backslashEscapes)
    {
        _position++;
        while (_position < _sql.Length)
        {
            var c = _sql[_position++];
            if (backslashEscapes && c == (byte)'\\')
            {
                _position++;
            }
            else if (c == quote)
            {
                if (_position < _sql.Length && _sql[_position] == quote)
                {
                    _position++;
                    continue;
                }

                return;
            }
        }

        _position = _sql.Length;
    }

    private void ScanNumber()
    {
        while (_position < _sql.Length && (IsDigit(_sql[_position]) || _sql[_position] is (byte)'.' or (byte)'_'))
        {
            _position++;
        }

        if (_position < _sql.Length && (_sql[_position] | 0x20) == (byte)'e')
        {
            var i = _position + 1;
            if (i < _sql.Length && _sql[i] is (byte)'+' or (byte)'-')
            {
                i++;
            }

            if (i < _sql.Length && IsDigit(_sql[i]))
            {
                _position = i;
                while (_position < _sql.Length && IsDigit(_sql[_position]))
                {
                    _position++;
                }
            }
        }
    }

    private void SkipSpaceAndComments()
    {
        while (_position < _sql.Length)
        {
            var c = _sql[_position];
            if (c is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or (byte)'\f' or (byte)'\v')
            {
                _position++;
            }
            else if (c == (byte)'-' && _position + 1 < _sql.Length && _sql[_position + 1] == (byte)'-')
            {
                SawComment = true;
                var end = _sql[_position..].IndexOf((byte)'\n');
                _position = end < 0 ? _sql.Length : _position + end + 1;
            }
            else if (c == (byte)'/' && _position + 1 < _sql.Length && _sql[_position + 1] == (byte)'*')
            {
                SawComment = true;
                SkipBlockComment();
            }
            else
            {
                return;
            }
        }
    }

    /// <summary>Block comments nest in PostgreSQL.</summary>
    private void SkipBlockComment()
    {
        var depth = 0;
        while (_position < _sql.Length)
        {
            if (_sql[_position] == (byte)'/' && _position + 1 < _sql.Length && _sql[_position + 1] == (byte)'*')
            {
                depth++;
                _position += 2;
            }
            else if (_sql[_position] == (byte)'*' && _position + 1 < _sql.Length && _sql[_position + 1] == (byte)'/')
            {
                depth--;
                _position += 2;
                if (depth == 0)
                {
                    return;
                }
            }
            else
            {
                _position++;
            }
        }
    }

    private readonly bool StartsComment(int i) =>
        i + 1 < _sql.Length && ((_sql[i] == (byte)'-' && _sql[i + 1] == (byte)'-') || (_sql[i] == (byte)'/' && _sql[i + 1] == (byte)'*'));

    private static bool IsDigit(byte c) => c is >= (byte)'0' and <= (byte)'9';

    private static bool IsIdentifierStart(byte c) => c is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or (byte)'_' or >= 0x80;

    private static bool IsIdentifierPart(byte c) => IsIdentifierStart(c) || IsDigit(c) || c == (byte)'$';

    private static bool IsOperatorChar(byte c) => c is (byte)'+' or (byte)'-' or (byte)'*' or (byte)'/' or (byte)'<' or (byte)'>' or (byte)'='
        or (byte)'~' or (byte)'!' or (byte)'@' or (byte)'#' or (byte)'%' or (byte)'^' or (byte)'&' or (byte)'|' or (byte)'`' or (byte)'?'
        or (byte)':' or (byte)'[' or (byte)']';
}
