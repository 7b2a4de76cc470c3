using Poold.Config;
using Poold.Routing;

namespace Poold.Fuzz.Targets;

/// <summary>
/// A statement's UTF-8 text through the lexer (every token inside the text, each call moving forward, the end
/// reached) and the classifier with two option sets, checking that its verdict cache (by text, and by shape: the text
/// with literals masked) returns the verdict the statement itself gets. Neither documents an exception: any is a crash.
/// </summary>
internal static class SqlTarget
{
    private static readonly RoutingOptions Strict = new()
    {
        AllowSqlComments = true,
        IgnoreLeadingWhiteSpace = false,
        StatementLevel = true,
        OnWrite = LoadBalanceOnWrite.DmlAdaptive,
        TempTableCheck = CheckTempTable.Trace,
        PrimaryRoutingPatterns = RoutingOptions.Compile([".*nextval.*", "lock .*"]),
        WriteFunctions = RoutingOptions.Compile(["nextval", "set_.*"]),
        DmlRelationships = new Dictionary<string, IReadOnlyList<string>> { ["t1"] = ["t2"] },
    };

    public static void Run(ReadOnlySpan<byte> input)
    {
        Lex(input);
        foreach (var options in (RoutingOptions[])[RoutingOptions.Default, Strict])
        {
            // The twin has every literal replaced, so it shares the statement's shape: classifying it first puts its
            // verdict in the shape cache, and the statement's cached verdict must still be its own.
            _ = QueryClassifier.Classify(Twin(input), options);
            var cached = QueryClassifier.Classify(input, options);
            var fresh = QueryClassifier.ClassifyUncached(input, options);
            if (!Same(cached, fresh))
            {
                throw new FuzzInvariantException($"cached verdict {cached} differs from the statement's own {fresh}");
            }
        }
    }

    private static byte[] Twin(ReadOnlySpan<byte> sql)
    {
        var twin = new List<byte>(sql.Length);
        var lexer = new SqlLexer(sql);
        var copied = 0;
        for (var token = lexer.Next(); token.Kind != TokenKind.End; token = lexer.Next())
        {
            if (token.Kind is TokenKind.String or TokenKind.Number)
            {
                twin.AddRange(sql[copied..token.Start]);
                twin.AddRange(token.Kind == TokenKind.String ? "'twin'"u8 : "7"u8);
                copied = token.Start + token.Length;
            }
        }

        twin.AddRange(sql[copied..]);
        return [.. twin];
    }

    private static bool Same(Classification a, Classification b) =>
        a.Target == b.Target && a.Reason == b.Reason && a.Writes == b.Writes && a.Transaction == b.Transaction && a.SettingKey == b.SettingKey
        && a.ResetsSession == b.ResetsSession && a.SessionSerializable == b.SessionSerializable && a.CreatedTempTable == b.CreatedTempTable
        && a.Functions.SequenceEqual(b.Functions) && a.Names.SequenceEqual(b.Names) && a.MultiStatement == b.MultiStatement && a.Verb == b.Verb
        && a.Deallocates == b.Deallocates;

    private static void Lex(ReadOnlySpan<byte> sql)
    {
        var lexer = new SqlLexer(sql);
        var previousEnd = 0;
        for (var i = 0; i <= sql.Length; i++)
        {
            var token = lexer.Next();
            if (token.Start < previousEnd || token.Length < 0 || token.Start + token.Length > sql.Length)
            {
                throw new FuzzInvariantException($"token {token} outside the text or before the previous one (which ended at {previousEnd})");
            }

            if (token.Kind == TokenKind.End)
            {
                return;
            }

            if (token.Length == 0)
            {
                throw new FuzzInvariantException($"empty token {token}");
            }

            previousEnd = token.Start + token.Length;
        }

        throw new FuzzInvariantException("the lexer did not reach the end");
    }
}
