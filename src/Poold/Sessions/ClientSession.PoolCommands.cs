using Poold.Pcp;
using Poold.Protocol;

namespace Poold.Sessions;

/// <summary>pgpool's SQL commands (SHOW POOL_NODES …), answered by Poold in the session, in both protocols.</summary>
internal sealed partial class ClientSession : IPoolCommandSession
{
    public Dictionary<string, string> PoolOverrides => _poolOverrides ??= new(StringComparer.Ordinal);

    /// <summary>Made at the first pgpool_set (and <see cref="_poolStatementsMade"/> at the first Poold statement parsed): an idle session holds neither.</summary>
    private Dictionary<string, string>? _poolOverrides;

    private PoolResult RunPoolCommand(string sql) =>
        PoolCommands.Execute(sql, _services.Settings, _services.Nodes.Current, _services.Cancels.Sessions, _services.Counters, this,
            _services.Nodes.Health, _services.Nodes.DiscoveryWarning, _services.Pool.SharedPools());

    private TransactionStatus VisibleStatus()
    {
        lock (_routingLock)
        {
            return _failedLink is not null ? TransactionStatus.Failed
                : _router!.InTransaction ? TransactionStatus.InTransaction
                : TransactionStatus.Idle;
        }
    }

    /// <summary>A simple Query that is a pool command: RowDescription, DataRows, CommandComplete (or ErrorResponse), ReadyForQuery.</summary>
    private void AnswerPoolQuery(string sql)
    {
        var result = RunPoolCommand(sql);
        var buffer = new MessageBuffer(1024);
        AppendResult(buffer, result, describe: true);
        buffer.ReadyForQuery(VisibleStatus());
        EnqueueSynthetic(buffer.Written.ToArray());
    }

    /// <summary>An extended-protocol batch made only of pool commands: Poold answers every message itself.</summary>
    private void AnswerPoolBatch(List<BatchMessage> messages, bool sync)
    {
        var buffer = new MessageBuffer(1024);
        var portals = new Dictionary<string, string>(StringComparer.Ordinal);
        var failed = false;
        for (var i = 0; i < messages.Count && !failed; i++)
        {
            var m = messages[i];
            switch (m.Code)
            {
                case (byte)FrontendCode.Parse:
                    PoolStatements[m.Name] = m.Query ?? "";
                    buffer.Empty(BackendCode.ParseComplete);
                    break;
                case (byte)FrontendCode.Bind:
                    portals[m.Name] = PoolStatements.GetValueOrDefault(m.StatementName, "");
                    buffer.Empty(BackendCode.BindComplete);
                    break;
                case (byte)FrontendCode.Describe:
                    {
                        var sql = m.StatementName == "S" ? PoolStatements.GetValueOrDefault(m.Name, "") : portals.GetValueOrDefault(m.Name, "");
                        if (m.StatementName == "S")
                        {
                            buffer.NoParameters();
                        }

                        var columns = RunPoolCommand(sql).Columns;
                        if (columns.Count > 0)
                        {
                            buffer.TextRowDescription(columns);
                        }
                        else
                        {
                            buffer.Empty(BackendCode.NoData);
                        }

                        break;
                    }

                case (byte)FrontendCode.Execute:
                    {
                        var result = RunPoolCommand(portals.GetValueOrDefault(m.Name, ""));
                        failed = result.Error is not null;
                        AppendResult(buffer, result, describe: false);
                        break;
                    }

                case (byte)FrontendCode.Close:
                    buffer.Empty(BackendCode.CloseComplete);
                    break;
            }
        }

        if (sync)
        {
            buffer.ReadyForQuery(VisibleStatus());
        }

        EnqueueSynthetic(buffer.Written.ToArray());
    }

    private Dictionary<string, string> PoolStatements => _poolStatementsMade ??= new(StringComparer.Ordinal);

    private Dictionary<string, string>? _poolStatementsMade;

    private static void AppendResult(MessageBuffer buffer, PoolResult result, bool describe)
    {
        if (result.Error is not null)
        {
            buffer.Error("ERROR", result.SqlState, result.Error);
            return;
        }

        if (result.Warning is not null)
        {
            buffer.Error("WARNING", "01000", result.Warning, code: BackendCode.NoticeResponse);
        }

        if (describe && result.Columns.Count > 0)
        {
            buffer.TextRowDescription(result.Columns);
        }

        foreach (var row in result.Rows)
        {
            buffer.TextDataRow(row);
        }

        buffer.CommandComplete(result.Tag.Length > 0 ? result.Tag : $"SELECT {result.Rows.Count}");
    }

    private void EnqueueSynthetic(byte[] answer)
    {
        Interlocked.Increment(ref _outstanding);
        _replies.TryWrite(new ReplyEntry(_backends.Primary!, Relay: true, 0, _lastSequence, answer));
        if (Volatile.Read(ref _watchPrimary))
        {
            _backends.Primary!.Connection.Reader.CancelPendingRead();
        }
    }
}
