namespace Poold.Routing;

/// <summary>
/// The rule behind a routing decision: a short, fixed label for each of the reasons the classifier, the
/// <see cref="SessionRouter"/>, the <see cref="LoadBalancer"/> and the session give. The reason text says the detail
/// (which function, which table, which redirect entry); the rule is what <c>PGPOOL EXPLAIN ROUTE</c> shows in its
/// <c>rule</c> column, what the per-statement log line starts with, and the <c>rule</c> label of
/// <c>poold_routing_decisions_total</c> (bounded: never a name taken from the statement).
/// </summary>
internal static class RouteRules
{
    public const string Write = "write";
    public const string ForUpdate = "FOR UPDATE";
    public const string SelectInto = "SELECT INTO";
    public const string MultiStatement = "multi-statement";
    public const string NoLoadBalanceComment = "NO LOAD BALANCE comment";
    public const string CommentOrText = "allow_sql_comments";
    public const string PrimaryPattern = "primary_routing_query_pattern_list";
    public const string Explain = "EXPLAIN";
    public const string Serializable = "serializable";
    public const string LoadBalanceOff = "load_balance_mode off";
    public const string TransactionWrote = "in transaction after write";
    public const string DmlAdaptive = "dml_adaptive";
    public const string SessionWrote = "session wrote";
    public const string TempTable = "temp table";
    public const string SystemCatalog = "system catalog";
    public const string VolatileFunction = "volatile function";
    public const string WriteFunctionList = "write_function_list";
    public const string ReadOnlyFunctionList = "read_only_function_list";
    public const string StandbyUnsafeFunction = "standby-unsafe function";
    public const string FailedTransaction = "failed transaction";
    public const string Portal = "portal";
    public const string SessionState = "session state";
    public const string Begin = "BEGIN";
    public const string LastTransactionWrote = "last transaction wrote";
    public const string FunctionCall = "function call";
    public const string WeightDraw = "weight draw";
    public const string RedirectList = "redirect list";
    public const string DelayThreshold = "delay threshold";
    public const string NodeUnavailable = "node unavailable";
    public const string WaitingForReplay = "waiting for replay";
    public const string StandbyBehind = "standby behind session LSN";

    /// <summary>Every rule, in a fixed order (the metric's label values are bound up front from it).</summary>
    public static IReadOnlyList<string> All { get; } =
    [
        Write, ForUpdate, SelectInto, MultiStatement, NoLoadBalanceComment, CommentOrText, PrimaryPattern, Explain, Serializable,
        LoadBalanceOff, TransactionWrote, DmlAdaptive, SessionWrote, TempTable, SystemCatalog, VolatileFunction, WriteFunctionList,
        ReadOnlyFunctionList, StandbyUnsafeFunction, FailedTransaction, Portal, SessionState, Begin, LastTransactionWrote, FunctionCall,
        WeightDraw, RedirectList, DelayThreshold, NodeUnavailable, WaitingForReplay, StandbyBehind,
    ];

    /// <summary>The rules under which a statement reads on the session's load-balance node (a draw, not a constraint).</summary>
    public static bool IsBalanceRule(string rule) => rule is WeightDraw or RedirectList or DelayThreshold or NodeUnavailable;

    /// <summary>The rules read_your_writes gives when it moves a read off the session's load-balance node (or holds it there).</summary>
    public static bool IsReadYourWritesRule(string rule) => rule is WaitingForReplay or StandbyBehind;

    /// <summary>The index in <see cref="All"/> of the rule behind <paramref name="reason"/>.</summary>
    public static int IndexOf(string reason)
    {
        var rule = Of(reason);
        for (var i = 0; i < All.Count; i++)
        {
            if (ReferenceEquals(All[i], rule))
            {
                return i;
            }
        }

        return 0;
    }

    /// <summary>The rule behind a reason text (see the class summary); anything the classifier sends to the primary is a write.</summary>
    public static string Of(string reason)
    {
        if (reason.StartsWith("BEGIN: ", StringComparison.Ordinal))
        {
            var why = reason["BEGIN: ".Length..];
            return why switch
            {
                "the session's last transaction wrote" => LastTransactionWrote,
                "opened where the session reads" => Begin,
                _ => Of(why),
            };
        }

        return reason switch
        {
            "multi-statement query" => MultiStatement,
            "/*NO LOAD BALANCE*/ comment" => NoLoadBalanceComment,
            "session state or transaction control" => SessionState,
            "the transaction failed on this node" => FailedTransaction,
            "the portal lives on this node" => Portal,
            "function call" => FunctionCall,
            "load_balance_mode = off" => LoadBalanceOff,
            "the session's transactions are SERIALIZABLE" or "SERIALIZABLE transaction" => Serializable,
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE" or "SET SESSION CHARACTERISTICS (isolation level)" or "SET default_transaction_isolation"
                or "SET transaction_isolation = serializable" or "BEGIN ISOLATION LEVEL SERIALIZABLE" => Serializable,
            "by weight" or "every weight is 0: the primary" => WeightDraw,
            _ when reason.StartsWith("a comment before the statement", StringComparison.Ordinal)
                   || reason.StartsWith("the text does not start with", StringComparison.Ordinal) => CommentOrText,
            _ when reason.StartsWith("matches primary_routing_query_pattern_list", StringComparison.Ordinal) => PrimaryPattern,
            _ when reason.Contains("with a locking clause", StringComparison.Ordinal) => ForUpdate,
            _ when reason.EndsWith("INTO creates a table", StringComparison.Ordinal) => SelectInto,
            _ when reason.StartsWith("EXPLAIN", StringComparison.Ordinal) => Explain,
            _ when reason.StartsWith("the transaction has written", StringComparison.Ordinal)
                   || reason.StartsWith("a transaction of this session has written", StringComparison.Ordinal) => TransactionWrote,
            _ when reason.StartsWith("reads an object the transaction wrote", StringComparison.Ordinal) => DmlAdaptive,
            _ when reason.StartsWith("the session has written", StringComparison.Ordinal) => SessionWrote,
            _ when reason.StartsWith("uses temporary table", StringComparison.Ordinal) => TempTable,
            _ when reason.StartsWith("reads system catalog", StringComparison.Ordinal) => SystemCatalog,
            _ when reason.StartsWith("calls ", StringComparison.Ordinal) => FunctionRule(reason),
            _ when reason.StartsWith("redirect preference", StringComparison.Ordinal) => RedirectList,
            _ when reason.StartsWith(DelayThresholdReason, StringComparison.Ordinal) => DelayThreshold,
            _ when reason.StartsWith(UnavailableReason, StringComparison.Ordinal) => NodeUnavailable,
            _ when reason.StartsWith(WaitingForReplay, StringComparison.Ordinal) => WaitingForReplay,
            _ when reason.StartsWith(StandbyBehind, StringComparison.Ordinal) => StandbyBehind,
            _ => Write,
        };
    }

    /// <summary>The load-balance node lags: how the session's reason for the statement starts.</summary>
    public const string DelayThresholdReason = "the load-balance node is over delay_threshold";

    /// <summary>The load-balance node could not be used: how the session's reason for the statement starts.</summary>
    public const string UnavailableReason = "the load-balance node is unavailable";

    private static string FunctionRule(string reason) =>
        reason.EndsWith("in write_function_list", StringComparison.Ordinal) ? WriteFunctionList
        : reason.EndsWith("not in read_only_function_list", StringComparison.Ordinal) ? ReadOnlyFunctionList
        : reason.EndsWith("which a standby refuses", StringComparison.Ordinal) ? StandbyUnsafeFunction
        : VolatileFunction;
}
