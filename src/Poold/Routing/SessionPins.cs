namespace Poold.Routing;

/// <summary>
/// Statements whose effect outlives their transaction on the server connection that ran them, so a transaction-mode
/// session that runs one keeps its connections for the rest of its life (PgBouncer would break such a client instead):
/// SQL-level PREPARE, LISTEN, temporary objects, session-level advisory locks, cursors declared WITH HOLD, SET ROLE /
/// SET SESSION AUTHORIZATION (a RESET ALL would not undo them for the next client), and LOAD.
/// </summary>
internal static class SessionPins
{
    private static readonly string[] SessionAdvisoryLocks =
        ["pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared"];

    /// <summary>Why <paramref name="c"/> pins the session, or null; <paramref name="text"/> is needed only for DECLARE.</summary>
    public static string? Reason(Classification c, string? text)
    {
        if (c.MultiStatement && text is not null && MultiStatementReason(text) is { } inside)
        {
            return inside;
        }

        switch (c.Verb)
        {
            case "PREPARE":
                return "SQL PREPARE (the prepared statement lives on this server connection)";
            case "LISTEN":
                return "LISTEN (notifications come to this server connection)";
            case "LOAD":
                return "LOAD (a library loaded into this server process)";
            case "DECLARE" when text is not null && DeclaresWithHold(text):
                return "DECLARE ... WITH HOLD (the cursor outlives the transaction)";
        }

        if (c.CreatedTempTable is not null || c.Reason.StartsWith("CREATE TEMP", StringComparison.Ordinal))
        {
            return "a temporary table (it exists only on this server connection)";
        }

        if (c.SettingKey is "session authorization" or "role")
        {
            return $"SET {(c.SettingKey == "role" ? "ROLE" : "SESSION AUTHORIZATION")} (RESET ALL does not undo it)";
        }

        foreach (var function in c.Functions)
        {
            var name = function[(function.LastIndexOf('.') + 1)..].Trim('"');
            foreach (var advisory in SessionAdvisoryLocks)
            {
                if (string.Equals(name, advisory, StringComparison.OrdinalIgnoreCase))
                {
                    return $"{advisory}() (a session-level advisory lock is held by this server connection)";
                }
            }
        }

        // In a statement whose functions are not listed (a write, a locking read): the classifier saw the call.
        return c.SessionAdvisoryLock ? "a session-level advisory lock (it is held by this server connection)" : null;
    }

    /// <summary>
    /// Whether <paramref name="c"/> may change a setting of its server connection: SET (but SET LOCAL) and RESET of any kind, DISCARD,
    /// set_config() anywhere in it, and a query string of several statements one of which does (<paramref name="text"/>).
    /// </summary>
    public static bool MayChangeSettings(Classification c, string? text)
    {
        if (c.Reason == "SET LOCAL")
        {
            // Ends with its transaction.
            return false;
        }

        if (c.Verb is "SET" or "RESET" or "DISCARD" || c.Target == RouteTarget.SessionState)
        {
            return true;
        }

        if (c.CallsSetConfig)
        {
            return true;
        }

        if (!c.MultiStatement)
        {
            return false;
        }

        // Several statements: each is looked at on its own (the text is not known for a Parse: any might).
        return text is null || SplitStatements(text).Any(statement => statement.Trim().Length > 0
            && MayChangeSettings(QueryClassifier.Classify(statement, RoutingOptions.Default) with { MultiStatement = false }, statement));
    }

    /// <summary>Several statements in one query string: each is classified on its own.</summary>
    private static string? MultiStatementReason(string text)
    {
        foreach (var statement in SplitStatements(text))
        {
            if (statement.Trim().Length > 0 && Reason(QueryClassifier.Classify(statement, RoutingOptions.Default) with { MultiStatement = false }, statement) is { } reason)
            {
                return reason;
            }
        }

        return null;
    }

    /// <summary>Splits at semicolons outside quotes (dollar quotes are rare in what pins; a miss only means no pin).</summary>
    private static IEnumerable<string> SplitStatements(string text)
    {
        var start = 0;
        char? quote = null;
        for (var i = 0; i < text.Length; i++)
        {
            var ch = text[i];
            if (quote is { } q)
            {
                if (ch == q)
                {
                    quote = null;
                }
            }
            else if (ch is '\'' or '"')
            {
                quote = ch;
            }
            else if (ch == ';')
            {
                yield return text[start..i];
                start = i + 1;
            }
        }

        yield return text[start..];
    }

    /// <summary>DECLARE … WITH HOLD, found as the words WITH and HOLD one after the other outside quotes.</summary>
    private static bool DeclaresWithHold(string text)
    {
        var words = SqlWords(text);
        for (var i = 0; i + 1 < words.Count; i++)
        {
            if (words[i] == "WITH" && words[i + 1] == "HOLD")
            {
                return true;
            }

            if (words[i] == "FOR")
            {
                // The cursor's query starts here: a WITH HOLD after it would be inside the query.
                return false;
            }
        }

        return false;
    }

    private static List<string> SqlWords(string text)
    {
        var words = new List<string>();
        var i = 0;
        while (i < text.Length)
        {
            var ch = text[i];
            if (ch is '\'' or '"')
            {
                var close = text.IndexOf(ch, i + 1);
                i = close < 0 ? text.Length : close + 1;
                words.Add("");
            }
            else if (char.IsLetter(ch) || ch == '_')
            {
                var start = i;
                while (i < text.Length && (char.IsLetterOrDigit(text[i]) || text[i] is '_' or '$'))
                {
                    i++;
                }

                words.Add(text[start..i].ToUpperInvariant());
            }
            else
            {
                i++;
            }
        }

        return words;
    }
}
