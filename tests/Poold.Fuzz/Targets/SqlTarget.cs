using Poold.Config;
using Poold.Routing;

namespace Poold.Fuzz.Targets;

/// <summary>
/// A statement's UTF-8 text through the lexer (every token inside the text, each call moving forward, the end
/// reached) and the classifier with two option sets. Neither documents an exception: any is a crash.
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
        _ = QueryClassifier.Classify(input, RoutingOptions.Default);
        _ = QueryClassifier.Classify(input, Strict);
    }

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
