namespace Poold.Routing;

/// <summary>
/// Finds the databases a statement needs free of other sessions: <c>DROP DATABASE x</c>, <c>ALTER DATABASE x RENAME
/// TO y</c> and <c>CREATE DATABASE y … TEMPLATE x</c> fail while anyone, Poold's idle cache included, is connected
/// to <c>x</c>. A small tokenizer of its own (identifiers, quoted identifiers, comments, punctuation): these
/// statements are rare and never on the hot path.
/// </summary>
internal static class DatabaseDdl
{
    /// <summary>The databases whose idle cached connections must be closed before <paramref name="sql"/> runs; empty for anything else.</summary>
    public static IReadOnlyList<string> DatabasesToFree(string sql)
    {
        var tokens = Tokens(sql).Take(64).ToList();
        if (tokens.Count < 3 || !Is(tokens[1], "database"))
        {
            return [];
        }

        if (Is(tokens[0], "drop"))
        {
            var at = 2;
            if (tokens.Count > 4 && Is(tokens[2], "if") && Is(tokens[3], "exists"))
            {
                at = 4;
            }

            return at < tokens.Count && tokens[at].IsName ? [tokens[at].Text] : [];
        }

        if (Is(tokens[0], "alter"))
        {
            return tokens.Count > 4 && tokens[2].IsName && Is(tokens[3], "rename") ? [tokens[2].Text] : [];
        }

        if (Is(tokens[0], "create"))
        {
            for (var i = 3; i < tokens.Count - 1; i++)
            {
                if (Is(tokens[i], "template"))
                {
                    var next = tokens[i + 1].Text == "=" && i + 2 < tokens.Count ? tokens[i + 2] : tokens[i + 1];
                    return next.IsName && !Is(next, "default") ? [next.Text] : [];
                }
            }
        }

        return [];
    }

    private static bool Is(Token token, string keyword) => token is { IsName: true, Quoted: false } && token.Text == keyword;

    private readonly record struct Token(string Text, bool IsName, bool Quoted);

    private static IEnumerable<Token> Tokens(string sql)
    {
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (char.IsWhiteSpace(c))
            {
                i++;
            }
            else if (c == '-' && i + 1 < sql.Length && sql[i + 1] == '-')
            {
                while (i < sql.Length && sql[i] != '\n')
                {
                    i++;
                }
            }
            else if (c == '/' && i + 1 < sql.Length && sql[i + 1] == '*')
            {
                var end = sql.IndexOf("*/", i + 2, StringComparison.Ordinal);
                i = end < 0 ? sql.Length : end + 2;
            }
            else if (c == '"')
            {
                var text = new System.Text.StringBuilder();
                i++;
                while (i < sql.Length)
                {
                    if (sql[i] == '"')
                    {
                        if (i + 1 < sql.Length && sql[i + 1] == '"')
                        {
                            text.Append('"');
                            i += 2;
                            continue;
                        }

                        i++;
                        break;
                    }

                    text.Append(sql[i++]);
                }

                yield return new Token(text.ToString(), IsName: true, Quoted: true);
            }
            else if (char.IsLetter(c) || c == '_')
            {
                var start = i;
                while (i < sql.Length && (char.IsLetterOrDigit(sql[i]) || sql[i] is '_' or '$'))
                {
                    i++;
                }

                // Unquoted identifiers fold to lower case, as PostgreSQL folds them.
                yield return new Token(QueryClassifier.FoldIdentifier(sql[start..i]), IsName: true, Quoted: false);
            }
            else if (c == ';')
            {
                yield break;
            }
            else
            {
                yield return new Token(c.ToString(), IsName: false, Quoted: false);
                i++;
            }
        }
    }
}
