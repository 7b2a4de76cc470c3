using System.Runtime.CompilerServices;
using System.Text;

namespace Poold.Routing;

/// <summary>Where a statement may run, before the session's state (transaction, temp tables, functions) is applied.</summary>
internal enum RouteTarget : byte
{
    /// <summary>Only the primary can run it (writes, locks, DDL, anything unknown).</summary>
    Primary,

    /// <summary>A read: the session's load-balance node may run it.</summary>
    LoadBalance,

    /// <summary>Session state (SET, RESET, DISCARD): runs where the batch goes and is replayed on every other node the session uses.</summary>
    SessionState,

    /// <summary>Transaction control (COMMIT, ROLLBACK, SAVEPOINT …): every node taking part in the transaction.</summary>
    Transaction,
}

/// <summary>What a transaction-control statement does.</summary>
internal enum TransactionEffect : byte
{
    None,
    Begin,

    /// <summary>BEGIN / START TRANSACTION … ISOLATION LEVEL SERIALIZABLE, or SET TRANSACTION ISOLATION LEVEL SERIALIZABLE.</summary>
    Serializable,
    End,
    Savepoint,
}

/// <summary>The classifier's verdict on one query string.</summary>
internal sealed record Classification(RouteTarget Target, string Reason)
{
    /// <summary>Not a read: inside an explicit transaction it makes the transaction "writing" (compat §6.4).</summary>
    public bool Writes { get; init; }

    public TransactionEffect Transaction { get; init; }

    /// <summary>For SET/RESET: the parameter (lower case), so a later SET of it replaces the earlier one in the replay list.</summary>
    public string? SettingKey { get; init; }

    /// <summary>DISCARD ALL / RESET ALL / SET SESSION AUTHORIZATION DEFAULT-like resets: the replay list starts over.</summary>
    public bool ResetsSession { get; init; }

    /// <summary>SET SESSION CHARACTERISTICS … SERIALIZABLE or default_transaction_isolation: true/false when changed.</summary>
    public bool? SessionSerializable { get; init; }

    /// <summary>CREATE TEMP TABLE name: the name, lower case unless quoted.</summary>
    public string? CreatedTempTable { get; init; }

    /// <summary>
    /// CREATE [OR REPLACE] FUNCTION/PROCEDURE and ALTER FUNCTION/PROCEDURE/ROUTINE: the function's name (without its
    /// schema; lower case unless quoted), whose volatility the session's function catalog may no longer know.
    /// </summary>
    public IReadOnlyList<string> DefinesFunctions { get; init; } = [];

    /// <summary>Functions called (as written, schema included), for the function lists and the volatility check.</summary>
    public IReadOnlyList<string> Functions { get; init; } = [];

    /// <summary>Other identifiers (tables, columns, aliases), for the temporary-table check.</summary>
    public IReadOnlyList<string> Names { get; init; } = [];

    /// <summary>More than one statement in one query string.</summary>
    public bool MultiStatement { get; init; }

    /// <summary>The statement's first keyword, upper case ("(" for a parenthesised select), for the per-node counters.</summary>
    public string? Verb { get; init; }

    /// <summary>DEALLOCATE [PREPARE] name: the name (as folded), or "*" for ALL; DISCARD ALL also drops every statement.</summary>
    public string? Deallocates { get; init; }

    /// <summary>COMMIT or ROLLBACK … AND CHAIN: the transaction ends and a new one, with the same characteristics, begins at once.</summary>
    public bool AndChain { get; init; }

    /// <summary>COMMIT or END (not ROLLBACK or ABORT): the transaction's work lasts, unless it had failed.</summary>
    public bool Commits { get; init; }

    /// <summary>SET LOCAL, SET TRANSACTION, SET CONSTRAINTS: a setting of the open transaction only.</summary>
    public bool SetsTransaction { get; init; }

    /// <summary>RESET name, SET name TO DEFAULT: back to the value the session started with.</summary>
    public bool ToDefault { get; init; }

    /// <summary>SET TRANSACTION (not SNAPSHOT): characteristics that COMMIT/ROLLBACK AND CHAIN carry into the next transaction.</summary>
    public bool Characteristics { get; init; }

    /// <summary>PREPARE TRANSACTION: the transaction ends for the session, and its settings stay, as at a COMMIT.</summary>
    public bool PreparesTransaction { get; init; }

    /// <summary>SAVEPOINT, RELEASE [SAVEPOINT] or ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT]: the savepoint's name, as folded.</summary>
    public string? SavepointName { get; init; }

    /// <summary>A call of a session-level advisory lock function anywhere in the text (a read, a write, a CTE).</summary>
    public bool SessionAdvisoryLock { get; init; }

    /// <summary>A call of set_config() anywhere in the text: it may change a setting for the rest of the session.</summary>
    public bool CallsSetConfig { get; init; }
}

/// <summary>
/// Decides, from the text alone, where a statement may run, following pgpool-II's streaming-replication rules
/// (compat §6.2, §6.5) on the tokens of <see cref="SqlLexer"/>: keywords inside strings, dollar quotes, comments or
/// quoted identifiers are never mistaken for the real ones. The session-dependent checks (functions, temporary
/// tables, transactions) are the <see cref="SessionRouter"/>'s.
/// </summary>
internal static class QueryClassifier
{
    /// <summary>Words followed by '(' that are syntax, not function calls.</summary>
    private static readonly HashSet<string> NotFunctions = new(StringComparer.OrdinalIgnoreCase)
    {
        "in", "exists", "any", "all", "some", "values", "as", "over", "filter", "within", "cast", "coalesce", "nullif", "greatest",
        "least", "row", "array", "on", "using", "from", "select", "where", "and", "or", "not", "into", "table", "lateral", "join",
        "with", "recursive", "materialized", "by", "set", "when", "then", "else", "case", "returning", "is", "distinct", "group",
        "partition", "order", "union", "intersect", "except", "limit", "offset", "having", "window", "rows", "range", "groups",
        "extract", "overlay", "position", "substring", "trim", "treat", "xmlelement", "xmlforest", "xmlparse", "xmlpi",
        "xmlroot", "xmlserialize", "xmlattributes", "xmlconcat", "xmlexists", "collate", "interval", "numeric", "decimal",
        "char", "character", "varchar", "timestamp", "time", "float", "bit", "grouping", "cube", "rollup", "sets", "if",
    };

    /// <summary>Keywords that are never table names, left out of <see cref="Classification.Names"/>.</summary>
    private static readonly HashSet<string> Keywords = new(StringComparer.OrdinalIgnoreCase)
    {
        "select", "from", "where", "and", "or", "not", "as", "on", "join", "left", "right", "inner", "outer", "full", "cross", "group",
        "by", "order", "having", "limit", "offset", "union", "all", "distinct", "case", "when", "then", "else", "end", "is", "null",
        "true", "false", "in", "exists", "like", "ilike", "between", "with", "recursive", "table", "values", "asc", "desc", "nulls",
        "first", "last", "fetch", "only", "lateral", "using", "natural", "except", "intersect", "window", "over", "partition", "filter",
        "into", "for", "to", "stdout", "copy", "show", "set", "default", "any", "some", "array", "insert", "update", "delete", "returning",
        "materialized", "rows", "next", "row", "ties", "similar", "escape", "collate", "current_date", "current_timestamp", "current_user",
        "session_user", "localtime", "localtimestamp", "interval", "at", "time", "zone", "merge", "matched", "do", "nothing", "conflict",
    };

    private static readonly Classification Empty = new(RouteTarget.LoadBalance, "empty query");

    public static Classification Classify(string sql, RoutingOptions options) => Classify(Encoding.UTF8.GetBytes(sql), options);

    /// <summary>Statements longer than this are classified every time rather than cached.</summary>
    private const int MaxCachedStatement = 2048;

    private const int CacheSlots = 4096;

    /// <summary>
    /// Verdicts by statement text: a direct-mapped cache (slot = hash of the bytes), so a statement seen before is
    /// classified without lexing or allocating. A verdict depends only on the text and the options, never on the
    /// session. Holds the statements without literals (parameterised ones) and those that cannot be shaped.
    /// </summary>
    private static readonly CacheEntry?[] Cache = new CacheEntry?[CacheSlots];

    /// <summary>
    /// Verdicts of reads and writes by shape: the text with every string and number literal replaced by a marker, so
    /// <c>... WHERE aid = 17</c> and <c>... WHERE aid = 42</c> share one entry (applications and pgbench inline
    /// their values; an exact-text cache would miss on nearly every statement).
    /// </summary>
    private static readonly CacheEntry?[] ShapeCache = new CacheEntry?[CacheSlots];

    private sealed record CacheEntry(byte[] Text, RoutingOptions Options, Classification Verdict);

    /// <summary>Marks a literal in a shape; a raw byte of this value is written twice, so shapes of different texts never collide.</summary>
    private const byte ShapeEscape = 0xFF;

    [SkipLocalsInit]
    public static Classification Classify(ReadOnlySpan<byte> sql, RoutingOptions options)
    {
        if (sql.Length > MaxCachedStatement)
        {
            return ClassifyUncached(sql, options);
        }

        // The exact text first (parameterised statements, repeated ones): no lexing.
        if (Lookup(Cache, sql, options, out var exactSlot) is { } known)
        {
            return known;
        }

        Span<byte> shape = stackalloc byte[2 * sql.Length];
        if (TryShape(sql, options, shape, out var shapeLength, out var literals) && literals > 0)
        {
            var key = shape[..shapeLength];
            if (Lookup(ShapeCache, key, options, out var shapeSlot) is { } sameShape)
            {
                return sameShape;
            }

            var verdict = ClassifyUncached(sql, options);
            Volatile.Write(ref ShapeCache[shapeSlot], new CacheEntry(key.ToArray(), options, verdict));
            return verdict;
        }

        var classified = ClassifyUncached(sql, options);
        Volatile.Write(ref Cache[exactSlot], new CacheEntry(sql.ToArray(), options, classified));
        return classified;
    }

    private static Classification? Lookup(CacheEntry?[] cache, ReadOnlySpan<byte> key, RoutingOptions options, out int slot)
    {
        var hash = new HashCode();
        hash.AddBytes(key);
        slot = (int)((uint)hash.ToHashCode() % CacheSlots);
        return Volatile.Read(ref cache[slot]) is { } entry && ReferenceEquals(entry.Options, options) && key.SequenceEqual(entry.Text)
            ? entry.Verdict
            : null;
    }

    /// <summary>
    /// The shape of a statement whose verdict cannot depend on its literals: one statement starting with SELECT, WITH,
    /// TABLE, VALUES, INSERT, UPDATE, DELETE or '(', without comments, and no primary_routing_query_pattern_list (its
    /// regular expressions see the literals). SET and the other statements that read their values are not shaped.
    /// </summary>
    private static bool TryShape(ReadOnlySpan<byte> sql, RoutingOptions options, Span<byte> shape, out int length, out int literals)
    {
        length = 0;
        literals = 0;
        if (options.PrimaryRoutingPatterns.Count > 0 || sql.IndexOf("/*"u8) >= 0)
        {
            return false;
        }

        var lexer = new SqlLexer(sql);
        var first = lexer.Next();
        if (!(first.Kind == TokenKind.OpenParen || first.Is(sql, "SELECT") || first.Is(sql, "WITH") || first.Is(sql, "TABLE")
              || first.Is(sql, "VALUES") || first.Is(sql, "INSERT") || first.Is(sql, "UPDATE") || first.Is(sql, "DELETE")))
        {
            return false;
        }

        var copied = 0;
        var ended = false;
        for (var token = first; token.Kind != TokenKind.End; token = lexer.Next())
        {
            if (ended)
            {
                return false; // a second statement
            }

            ended = token.Kind == TokenKind.Semicolon;
            if (token.Kind is TokenKind.String or TokenKind.Number)
            {
                literals++;
                length = CopyEscaped(sql[copied..token.Start], shape, length);
                shape[length++] = ShapeEscape;
                shape[length++] = token.Kind == TokenKind.String ? (byte)1 : (byte)2;
                copied = token.Start + token.Length;
            }
        }

        length = CopyEscaped(sql[copied..], shape, length);
        return !lexer.SawComment;
    }

    private static int CopyEscaped(ReadOnlySpan<byte> text, Span<byte> shape, int at)
    {
        foreach (var b in text)
        {
            shape[at++] = b;
            if (b == ShapeEscape)
            {
                shape[at++] = 0;
            }
        }

        return at;
    }

    internal static Classification ClassifyUncached(ReadOnlySpan<byte> sql, RoutingOptions options)
    {
        var statements = Tokenize(sql, out var sawComment);
        if (statements.Count == 0)
        {
            return Empty;
        }

        var tokens = statements[0];
        var verdict = ClassifyStatement(sql, tokens) with
        {
            Verb = tokens[0].Kind == TokenKind.OpenParen ? "(" : tokens[0].Kind == TokenKind.Word ? Upper(sql, tokens[0]) : null,
            SessionAdvisoryLock = Calls(sql, statements, SessionAdvisoryLockFunctions),
            CallsSetConfig = Calls(sql, statements, SetConfigFunction),
        };
        if (statements.Count > 1)
        {
            // pgpool-II sends any multi-statement string to the primary; it writes only when one of its statements does.
            var writes = false;
            List<string>? defined = null;
            foreach (var statement in statements)
            {
                var each = ClassifyStatement(sql, statement);
                writes |= each.Target != RouteTarget.LoadBalance;
                if (each.DefinesFunctions.Count > 0)
                {
                    (defined ??= []).AddRange(each.DefinesFunctions);
                }
            }

            return verdict with
            {
                Target = RouteTarget.Primary,
                Reason = "multi-statement query",
                Writes = writes,
                MultiStatement = true,
                DefinesFunctions = defined ?? [],
            };
        }

        if (verdict.Target == RouteTarget.LoadBalance)
        {
            if (options.NoLoadBalanceHint && ContainsNoLoadBalanceHint(sql))
            {
                return verdict with { Target = RouteTarget.Primary, Reason = "/*NO LOAD BALANCE*/ comment" };
            }

            var isCopy = tokens[0].Is(sql, "COPY");
            if (!options.AllowSqlComments && !isCopy && !StartsLikeARead(sql, options.IgnoreLeadingWhiteSpace))
            {
                return verdict with
                {
                    Target = RouteTarget.Primary,
                    Reason = sawComment ? "a comment before the statement (allow_sql_comments = off)" : "the text does not start with SELECT, WITH, TABLE or '('",
                };
            }

            foreach (var pattern in options.PrimaryRoutingPatterns)
            {
                if (pattern.IsMatch(Encoding.UTF8.GetString(sql)))
                {
                    return verdict with { Target = RouteTarget.Primary, Reason = $"matches primary_routing_query_pattern_list entry {pattern}" };
                }
            }
        }
        else if (verdict.Names.Count == 0 && verdict.Writes)
        {
            // For dml_adaptive: the objects a write touches.
            verdict = verdict with { Names = Identifiers(sql, tokens, 1).Names };
        }

        return verdict;
    }

    /// <summary>The tokens of each non-empty statement.</summary>
    private static List<List<SqlToken>> Tokenize(ReadOnlySpan<byte> sql, out bool sawComment)
    {
        var lexer = new SqlLexer(sql);
        var statements = new List<List<SqlToken>>();
        List<SqlToken>? current = null;
        while (true)
        {
            var token = lexer.Next();
            if (token.Kind == TokenKind.End)
            {
                break;
            }

            if (token.Kind == TokenKind.Semicolon)
            {
                current = null;
                continue;
            }

            if (current is null)
            {
                current = [];
                statements.Add(current);
            }

            current.Add(token);
        }

        sawComment = lexer.SawComment;
        return statements;
    }

    private static bool StartsLikeARead(ReadOnlySpan<byte> sql, bool ignoreLeadingWhiteSpace)
    {
        var i = 0;
        if (ignoreLeadingWhiteSpace)
        {
            while (i < sql.Length && sql[i] is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or (byte)'\f' or (byte)'\v')
            {
                i++;
            }
        }

        return i < sql.Length && sql[i] is (byte)'s' or (byte)'S' or (byte)'w' or (byte)'W' or (byte)'t' or (byte)'T' or (byte)'(';
    }

    private static bool ContainsNoLoadBalanceHint(ReadOnlySpan<byte> sql) =>
        sql.IndexOf("/*NO LOAD BALANCE*/"u8) >= 0;

    private static Classification ClassifyStatement(ReadOnlySpan<byte> sql, List<SqlToken> t)
    {
        var first = t[0];
        if (first.Kind == TokenKind.OpenParen)
        {
            return Read(sql, t, 0, "parenthesised SELECT");
        }

        if (first.Kind != TokenKind.Word)
        {
            return Write("not a statement Poold recognises");
        }

        var keyword = Upper(sql, first);
        switch (keyword)
        {
            case "SELECT":
                return Read(sql, t, 0, "SELECT");
            case "TABLE":
                return Read(sql, t, 0, "TABLE");
            case "WITH":
                return With(sql, t);
            case "VALUES":
                return Write("VALUES (pgpool-II balances only text starting with SELECT, WITH, TABLE or '(')") with { Writes = false };
            case "SHOW":
                return new Classification(RouteTarget.LoadBalance, "SHOW") with { Names = [] };
            case "EXPLAIN":
                return Write("EXPLAIN (pgpool-II sends every EXPLAIN to the primary)");
            case "COPY":
                return Copy(sql, t);
            case "LOCK":
                return Lock(sql, t);
            case "SET":
                return Set(sql, t);
            case "RESET":
                return t.Count > 1 && t[1].Is(sql, "ALL")
                    ? new Classification(RouteTarget.SessionState, "RESET ALL") { Writes = true, ResetsSession = true }
                    : new Classification(RouteTarget.SessionState, "RESET") { Writes = true, SettingKey = SettingName(sql, t, 1), ToDefault = true };
            case "DISCARD":
                return new Classification(RouteTarget.SessionState, "DISCARD")
                {
                    Writes = true,
                    Deallocates = t.Count > 1 && t[1].Is(sql, "ALL") ? "*" : null,
                    ResetsSession = t.Count > 1 && t[1].Is(sql, "ALL"),
                    SettingKey = t.Count > 1 && !t[1].Is(sql, "ALL") ? "discard " + Upper(sql, t[1]).ToLowerInvariant() : null,
                };
            case "BEGIN":
            case "START":
                return Begin(sql, t);
            case "COMMIT" or "END" or "ABORT" or "ROLLBACK":
                if (t.Count > 1 && t[1].Is(sql, "PREPARED"))
                {
                    return Write("two-phase commit");
                }

                if (keyword == "ROLLBACK" && t.Count > 1 && (t[1].Is(sql, "TO") || (t.Count > 2 && t[2].Is(sql, "TO"))))
                {
                    return new Classification(RouteTarget.Transaction, "ROLLBACK TO SAVEPOINT")
                    {
                        Writes = true,
                        Transaction = TransactionEffect.Savepoint,
                        SavepointName = SavepointName(sql, t, t[1].Is(sql, "TO") ? 2 : 3),
                    };
                }

                return new Classification(RouteTarget.Transaction, "end of transaction")
                {
                    Transaction = TransactionEffect.End,
                    AndChain = t.Count > 2 && t[^1].Is(sql, "CHAIN") && t[^2].Is(sql, "AND"),
                    Commits = keyword is "COMMIT" or "END",
                };
            case "SAVEPOINT":
                return new Classification(RouteTarget.Transaction, keyword)
                {
                    Writes = true,
                    Transaction = TransactionEffect.Savepoint,
                    SavepointName = SavepointName(sql, t, 1, optionalKeyword: false),
                };
            case "RELEASE":
                return new Classification(RouteTarget.Transaction, keyword)
                {
                    Writes = true,
                    Transaction = TransactionEffect.Savepoint,
                    SavepointName = SavepointName(sql, t, 1),
                };
            case "PREPARE" when t.Count > 1 && t[1].Is(sql, "TRANSACTION"):
                return Write("two-phase commit") with { PreparesTransaction = true };
            case "DEALLOCATE":
                {
                    // DEALLOCATE with no name is PostgreSQL's syntax error: it drops nothing.
                    var at = t.Count > 1 && t[1].Is(sql, "PREPARE") ? 2 : 1;
                    var name = at < t.Count ? (t[at].Is(sql, "ALL") ? "*" : Name(sql, t[at])) : null;
                    return Write("DEALLOCATE (where the statement lives)") with { Deallocates = name };
                }

            case "PREPARE" or "EXECUTE":
                return Write($"{keyword} (SQL-level prepared statements live on the primary, as in pgpool-II)");
            case "CREATE":
                return Create(sql, t);
            case "ALTER" when t.Count > 2 && (t[1].Is(sql, "FUNCTION") || t[1].Is(sql, "PROCEDURE") || t[1].Is(sql, "ROUTINE"))
                                 && FunctionName(sql, t, 2) is { } altered:
                // ALTER FUNCTION f(…) RENAME TO g: g is the function now.
                var renamed = t.Count > 2 && t[^3].Is(sql, "RENAME") && t[^2].Is(sql, "TO") && t[^1].Kind is TokenKind.Word or TokenKind.QuotedIdentifier
                    ? Name(sql, t[^1])
                    : null;
                return Write($"{keyword} writes or is not known to be read-only") with { DefinesFunctions = renamed is null ? [altered] : [altered, renamed] };
            default:
                return Write($"{keyword} writes or is not known to be read-only");
        }
    }

    private static Classification Write(string reason) => new(RouteTarget.Primary, reason) { Writes = true };

    /// <summary>A SELECT-like statement starting at <paramref name="from"/>: locking clauses and INTO make it a write.</summary>
    private static Classification Read(ReadOnlySpan<byte> sql, List<SqlToken> t, int from, string what)
    {
        var depth = 0;
        for (var i = from; i < t.Count; i++)
        {
            var token = t[i];
            switch (token.Kind)
            {
                case TokenKind.OpenParen:
                    depth++;
                    continue;
                case TokenKind.CloseParen:
                    depth--;
                    continue;
            }

            if (token.Is(sql, "FOR") && i + 1 < t.Count
                                     && (t[i + 1].Is(sql, "UPDATE") || t[i + 1].Is(sql, "SHARE") || t[i + 1].Is(sql, "NO") || t[i + 1].Is(sql, "KEY")))
            {
                return Write($"{what} with a locking clause (FOR {Upper(sql, t[i + 1])} …)");
            }

            if (depth == 0 && token.Is(sql, "INTO") && i > from)
            {
                var at = i + 1;
                if (at < t.Count && (t[at].Is(sql, "LOCAL") || t[at].Is(sql, "GLOBAL")))
                {
                    at++;
                }

                if (at < t.Count && (t[at].Is(sql, "TEMP") || t[at].Is(sql, "TEMPORARY")))
                {
                    at += at + 1 < t.Count && t[at + 1].Is(sql, "TABLE") ? 2 : 1;
                    if (at < t.Count)
                    {
                        return Write($"CREATE TEMP ({what} … INTO TEMP: the temporary table lives on the primary)") with { CreatedTempTable = Name(sql, t[at]) };
                    }
                }

                return Write($"{what} … INTO creates a table");
            }
        }

        var (functions, names) = Identifiers(sql, t, from);
        return new Classification(RouteTarget.LoadBalance, what) { Functions = functions, Names = names };
    }

    /// <summary>WITH [RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED] (body), … then the main statement.</summary>
    private static Classification With(ReadOnlySpan<byte> sql, List<SqlToken> t)
    {
        var i = 1;
        if (i < t.Count && t[i].Is(sql, "RECURSIVE"))
        {
            i++;
        }

        while (i < t.Count)
        {
            // name [ ( columns ) ] AS [ NOT ] [ MATERIALIZED ] ( body )
            i++;
            if (i < t.Count && t[i].Kind == TokenKind.OpenParen)
            {
                i = SkipParens(t, i);
            }

            if (i >= t.Count || !t[i].Is(sql, "AS"))
            {
                return Write("WITH clause Poold cannot read");
            }

            i++;
            while (i < t.Count && (t[i].Is(sql, "NOT") || t[i].Is(sql, "MATERIALIZED")))
            {
                i++;
            }

            if (i >= t.Count || t[i].Kind != TokenKind.OpenParen)
            {
                return Write("WITH clause Poold cannot read");
            }

            var bodyStart = i + 1;
            var bodyEnd = SkipParens(t, i);
            if (bodyStart < t.Count && t[bodyStart].Kind == TokenKind.Word)
            {
                var verb = Upper(sql, t[bodyStart]);
                if (verb is "INSERT" or "UPDATE" or "DELETE" or "MERGE")
                {
                    return Write($"writable CTE ({verb} inside WITH)");
                }
            }

            i = bodyEnd;
            if (i < t.Count && t[i].Kind == TokenKind.Comma)
            {
                i++;
                continue;
            }

            break;
        }

        if (i >= t.Count)
        {
            return Write("WITH without a statement");
        }

        var main = t[i];
        if (main.Is(sql, "SELECT") || main.Is(sql, "TABLE") || main.Kind == TokenKind.OpenParen)
        {
            var read = Read(sql, t, 0, "WITH … SELECT");
            return read.Target == RouteTarget.LoadBalance ? read with { Functions = Identifiers(sql, t, 0).Functions, Names = Identifiers(sql, t, 0).Names } : read;
        }

        // A literal where the statement should be stays out of the reason: verdicts are cached by shape (literals masked),
        // so its text would show in the verdict of every statement of that shape.
        return Write(main.Kind is TokenKind.String or TokenKind.Number ? "WITH … followed by a literal" : $"WITH … {Upper(sql, main)}");
    }

    private static int SkipParens(List<SqlToken> t, int open)
    {
        var depth = 0;
        for (var i = open; i < t.Count; i++)
        {
            if (t[i].Kind == TokenKind.OpenParen)
            {
                depth++;
            }
            else if (t[i].Kind == TokenKind.CloseParen && --depth == 0)
            {
                return i + 1;
            }
        }

        return t.Count;
    }

    /// <summary>COPY … TO STDOUT reads; COPY … FROM and COPY to or from a file write (or need the primary's file system).</summary>
    private static Classification Copy(ReadOnlySpan<byte> sql, List<SqlToken> t)
    {
        var i = 1;
        if (i < t.Count && t[i].Kind == TokenKind.OpenParen)
        {
            var inner = Read(sql, t, i + 1, "COPY (SELECT …)");
            if (inner.Target != RouteTarget.LoadBalance || (i + 1 < t.Count && !t[i + 1].Is(sql, "SELECT") && !t[i + 1].Is(sql, "WITH")
                                                             && !t[i + 1].Is(sql, "TABLE")))
            {
                return Write("COPY of a statement that writes");
            }

            i = SkipParens(t, i);
        }
        else
        {
            while (i < t.Count && !t[i].Is(sql, "TO") && !t[i].Is(sql, "FROM"))
            {
                i++;
            }
        }

        if (i < t.Count && t[i].Is(sql, "TO") && i + 1 < t.Count && t[i + 1].Is(sql, "STDOUT"))
        {
            var (functions, names) = Identifiers(sql, t, 1);
            return new Classification(RouteTarget.LoadBalance, "COPY … TO STDOUT") { Functions = functions, Names = names };
        }

        return Write(i < t.Count && t[i].Is(sql, "TO") ? "COPY … TO a file (on the primary)" : "COPY … FROM");
    }

    /// <summary>LOCK below ROW EXCLUSIVE runs where the session runs (and marks the transaction writing); stronger locks need the primary.</summary>
    private static Classification Lock(ReadOnlySpan<byte> sql, List<SqlToken> t)
    {
        for (var i = 1; i + 1 < t.Count; i++)
        {
            if (t[i].Is(sql, "IN"))
            {
                var mode = Upper(sql, t[i + 1]) + (i + 2 < t.Count ? " " + Upper(sql, t[i + 2]) : "");
                if (mode is "ACCESS SHARE" or "ROW SHARE")
                {
                    return new Classification(RouteTarget.SessionState, $"LOCK IN {mode} MODE (weaker than ROW EXCLUSIVE)") { Writes = true };
                }

                break;
            }
        }

        return Write("LOCK (ROW EXCLUSIVE or stronger)");
    }

    private static Classification Set(ReadOnlySpan<byte> sql, List<SqlToken> t)
    {
        if (t.Count < 2)
        {
            return Write("SET without a parameter");
        }

        if (t[1].Is(sql, "TRANSACTION"))
        {
            if (HasSequence(sql, t, "ISOLATION", "LEVEL", "SERIALIZABLE"))
            {
                return new Classification(RouteTarget.Primary, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                {
                    Writes = false,
                    Transaction = TransactionEffect.Serializable,
                };
            }

            if (HasSequence(sql, t, "READ", "WRITE"))
            {
                return Write("SET TRANSACTION READ WRITE (a standby refuses it)");
            }

            // SET TRANSACTION SNAPSHOT names a snapshot another node does not have: not replayed on a joining node.
            var snapshot = t.Count > 2 && t[2].Is(sql, "SNAPSHOT");
            return new Classification(RouteTarget.SessionState, "SET TRANSACTION") { SetsTransaction = !snapshot, Characteristics = !snapshot };
        }

        if (t[1].Is(sql, "SESSION") && t.Count > 2 && t[2].Is(sql, "CHARACTERISTICS"))
        {
            if (HasSequence(sql, t, "ISOLATION", "LEVEL"))
            {
                var serializable = HasSequence(sql, t, "LEVEL", "SERIALIZABLE");
                return new Classification(RouteTarget.Primary, "SET SESSION CHARACTERISTICS (isolation level)")
                {
                    Writes = true,
                    SessionSerializable = serializable,
                };
            }

            return HasSequence(sql, t, "READ", "WRITE")
                ? Write("SET SESSION CHARACTERISTICS … READ WRITE (a standby refuses it)")
                : new Classification(RouteTarget.SessionState, "SET SESSION CHARACTERISTICS") { Writes = true, SettingKey = "session characteristics" };
        }

        if (t[1].Is(sql, "SESSION") && t.Count > 2 && t[2].Is(sql, "AUTHORIZATION"))
        {
            return new Classification(RouteTarget.SessionState, "SET SESSION AUTHORIZATION") { Writes = true, SettingKey = "session authorization" };
        }

        var scope = 1;
        var local = false;
        if (t[1].Is(sql, "SESSION") || t[1].Is(sql, "LOCAL"))
        {
            local = t[1].Is(sql, "LOCAL");
            scope = 2;
        }

        var name = SettingName(sql, t, scope);
        if (name == "default_transaction_isolation")
        {
            var serializable = sql[t[^1].Start..].IndexOf("serializable"u8) >= 0 || Upper(sql, t[^1]).Contains("SERIALIZABLE", StringComparison.Ordinal);
            return new Classification(RouteTarget.Primary, "SET default_transaction_isolation") { Writes = true, SessionSerializable = serializable };
        }

        if (name is "transaction_read_only" or "default_transaction_read_only" && (Upper(sql, t[^1]) is "OFF" or "FALSE" or "0" || Text(sql, t[^1]) is "'off'" or "'false'"))
        {
            return Write($"SET {name} = off (a standby refuses it)");
        }

        if (name == "transaction_isolation" && sql.IndexOf("serializable"u8) >= 0)
        {
            return new Classification(RouteTarget.Primary, "SET transaction_isolation = serializable") { Transaction = TransactionEffect.Serializable };
        }

        if (name == "constraints")
        {
            return new Classification(RouteTarget.SessionState, "SET CONSTRAINTS") { Writes = true, SetsTransaction = true };
        }

        return new Classification(RouteTarget.SessionState, local ? "SET LOCAL" : "SET")
        {
            Writes = true,
            SettingKey = local ? null : name,
            SetsTransaction = local,
            ToDefault = !local && t.Count > scope + 2 && t[^1].Is(sql, "DEFAULT") && (t[^2].Is(sql, "TO") || t[^2].Kind == TokenKind.Operator),
        };
    }

    private static string SettingName(ReadOnlySpan<byte> sql, List<SqlToken> t, int at)
    {
        if (at >= t.Count)
        {
            return "";
        }

        var name = Text(sql, t[at]).ToLowerInvariant();
        if (name is "session" && at + 1 < t.Count)
        {
            return "session " + Text(sql, t[at + 1]).ToLowerInvariant();
        }

        if (name is "time" && at + 1 < t.Count && t[at + 1].Is(sql, "ZONE"))
        {
            return "timezone";
        }

        if (name is "names")
        {
            return "client_encoding";
        }

        return at + 2 < t.Count && t[at + 1].Kind == TokenKind.Dot ? name + "." + Text(sql, t[at + 2]).ToLowerInvariant() : name;
    }

    private static Classification Begin(ReadOnlySpan<byte> sql, List<SqlToken> t)
    {
        if (t[0].Is(sql, "START") && (t.Count < 2 || !t[1].Is(sql, "TRANSACTION")))
        {
            return Write("START without TRANSACTION");
        }

        if (HasSequence(sql, t, "ISOLATION", "LEVEL", "SERIALIZABLE"))
        {
            return new Classification(RouteTarget.Primary, "BEGIN ISOLATION LEVEL SERIALIZABLE") { Transaction = TransactionEffect.Serializable };
        }

        return new Classification(RouteTarget.Transaction, "BEGIN") { Transaction = TransactionEffect.Begin };
    }

    private static readonly string[] SessionAdvisoryLockFunctions =
        ["PG_ADVISORY_LOCK", "PG_ADVISORY_LOCK_SHARED", "PG_TRY_ADVISORY_LOCK", "PG_TRY_ADVISORY_LOCK_SHARED"];

    private static readonly string[] SetConfigFunction = ["SET_CONFIG"];

    /// <summary>Whether one of <paramref name="functions"/> (upper case) is called anywhere in any of the statements.</summary>
    private static bool Calls(ReadOnlySpan<byte> sql, List<List<SqlToken>> statements, string[] functions)
    {
        foreach (var t in statements)
        {
            for (var i = 0; i + 1 < t.Count; i++)
            {
                if (t[i + 1].Kind != TokenKind.OpenParen || t[i].Kind != TokenKind.Word)
                {
                    continue;
                }

                foreach (var function in functions)
                {
                    if (t[i].Length == function.Length && t[i].Is(sql, function))
                    {
                        return true;
                    }
                }
            }
        }

        return false;
    }

    private static Classification Create(ReadOnlySpan<byte> sql, List<SqlToken> t)
    {
        var i = 1;
        if (i + 1 < t.Count && t[i].Is(sql, "OR") && t[i + 1].Is(sql, "REPLACE"))
        {
            i += 2;
        }

        if (i < t.Count && (t[i].Is(sql, "GLOBAL") || t[i].Is(sql, "LOCAL")))
        {
            i++;
        }

        // CREATE [UNLOGGED] TABLE [IF NOT EXISTS] pg_temp.name (or a view, sequence or function there): temporary by its schema.
        var j = i < t.Count && t[i].Is(sql, "UNLOGGED") ? i + 1 : i;
        if (j < t.Count && (t[j].Is(sql, "TABLE") || t[j].Is(sql, "VIEW") || t[j].Is(sql, "SEQUENCE") || t[j].Is(sql, "FUNCTION")))
        {
            var at = j + 1;
            if (at + 2 < t.Count && t[at].Is(sql, "IF") && t[at + 1].Is(sql, "NOT") && t[at + 2].Is(sql, "EXISTS"))
            {
                at += 3;
            }

            if (at + 2 < t.Count && t[at].Is(sql, "PG_TEMP") && t[at + 1].Kind == TokenKind.Dot)
            {
                return Write("CREATE TEMP (in schema pg_temp: the temporary object lives on the primary)") with { CreatedTempTable = Name(sql, t[at + 2]) };
            }
        }

        if (i < t.Count && (t[i].Is(sql, "TEMP") || t[i].Is(sql, "TEMPORARY")))
        {
            i++;
            if (i < t.Count && t[i].Is(sql, "UNLOGGED"))
            {
                i++;
            }

            if (i < t.Count && (t[i].Is(sql, "TABLE") || t[i].Is(sql, "VIEW") || t[i].Is(sql, "SEQUENCE")))
            {
                i++;
                if (i + 2 < t.Count && t[i].Is(sql, "IF") && t[i + 1].Is(sql, "NOT") && t[i + 2].Is(sql, "EXISTS"))
                {
                    i += 3;
                }

                if (i < t.Count)
                {
                    return Write("CREATE TEMP (the temporary object lives on the primary)") with { CreatedTempTable = Name(sql, t[i]) };
                }
            }
        }

        if (i < t.Count && (t[i].Is(sql, "FUNCTION") || t[i].Is(sql, "PROCEDURE")) && FunctionName(sql, t, i + 1) is { } created)
        {
            return Write("CREATE (DDL)") with { DefinesFunctions = [created] };
        }

        return Write("CREATE (DDL)");
    }

    /// <summary>The last part of a possibly schema-qualified name starting at token <paramref name="at"/>, or null when none is there.</summary>
    private static string? FunctionName(ReadOnlySpan<byte> sql, List<SqlToken> t, int at)
    {
        for (var k = at; k < t.Count && t[k].Kind is TokenKind.Word or TokenKind.QuotedIdentifier; k += 2)
        {
            if (k + 1 >= t.Count || t[k + 1].Kind != TokenKind.Dot)
            {
                return Name(sql, t[k]);
            }
        }

        return null;
    }

    private static bool HasSequence(ReadOnlySpan<byte> sql, List<SqlToken> t, params string[] words)
    {
        for (var i = 0; i + words.Length <= t.Count; i++)
        {
            var all = true;
            for (var j = 0; j < words.Length && all; j++)
            {
                all = t[i + j].Is(sql, words[j]);
            }

            if (all)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Function names (a word or qualified name followed by '(') and the other names, from token <paramref name="from"/> on.</summary>
    private static (IReadOnlyList<string> Functions, IReadOnlyList<string> Names) Identifiers(ReadOnlySpan<byte> sql, List<SqlToken> t, int from)
    {
        List<string>? functions = null;
        List<string>? names = null;
        for (var i = from; i < t.Count; i++)
        {
            if (t[i].Kind is not (TokenKind.Word or TokenKind.QuotedIdentifier))
            {
                continue;
            }

            // Qualified name: a.b(.c)
            var end = i;
            while (end + 2 < t.Count && t[end + 1].Kind == TokenKind.Dot && t[end + 2].Kind is TokenKind.Word or TokenKind.QuotedIdentifier)
            {
                end += 2;
            }

            var isCall = end + 1 < t.Count && t[end + 1].Kind == TokenKind.OpenParen;
            if (isCall)
            {
                var name = Name(sql, t[i]);
                for (var k = i + 2; k <= end; k += 2)
                {
                    name += "." + Name(sql, t[k]);
                }

                if (end > i || !NotFunctions.Contains(name))
                {
                    (functions ??= []).Add(name);
                }
            }
            else
            {
                for (var k = i; k <= end; k += 2)
                {
                    if (t[k].Kind == TokenKind.QuotedIdentifier || !Keywords.Contains(Text(sql, t[k])))
                    {
                        (names ??= []).Add(Name(sql, t[k]));
                    }
                }
            }

            i = end;
        }

        return (functions ?? (IReadOnlyList<string>)[], names ?? (IReadOnlyList<string>)[]);
    }

    /// <summary>
    /// The name in <c>[SAVEPOINT] name</c> from token <paramref name="at"/> on (a savepoint may itself be called
    /// "savepoint"), or null when no identifier is there.
    /// </summary>
    private static string? SavepointName(ReadOnlySpan<byte> sql, List<SqlToken> t, int at, bool optionalKeyword = true)
    {
        if (optionalKeyword && at + 1 < t.Count && t[at].Is(sql, "SAVEPOINT") && t[at + 1].Kind is TokenKind.Word or TokenKind.QuotedIdentifier)
        {
            at++;
        }

        return at < t.Count && t[at].Kind is TokenKind.Word or TokenKind.QuotedIdentifier ? Name(sql, t[at]) : null;
    }

    /// <summary>An identifier as PostgreSQL folds it: unquoted per <see cref="FoldIdentifier"/>, quoted as written.</summary>
    private static string Name(ReadOnlySpan<byte> sql, SqlToken token)
    {
        var text = Text(sql, token);
        return token.Kind == TokenKind.QuotedIdentifier && text.Length >= 2 && text[0] == '"'
            ? text[1..^1].Replace("\"\"", "\"", StringComparison.Ordinal)
            : FoldIdentifier(text);
    }

    /// <summary>An unquoted identifier as PostgreSQL folds it in a multibyte encoding: ASCII letters to lower case, nothing else.</summary>
    internal static string FoldIdentifier(string text) =>
        string.Create(text.Length, text, static (span, t) =>
        {
            for (var i = 0; i < t.Length; i++)
            {
                span[i] = t[i] is >= 'A' and <= 'Z' ? (char)(t[i] + 32) : t[i];
            }
        });

    private static string Text(ReadOnlySpan<byte> sql, SqlToken token) => Encoding.UTF8.GetString(token.Text(sql));

    private static string Upper(ReadOnlySpan<byte> sql, SqlToken token) => Text(sql, token).ToUpperInvariant();
}
