using System.Text;
using Poold.Pcp;
using Poold.Protocol;

namespace Poold.Sessions;

/// <summary>pgpool's SQL commands (SHOW POOL_NODES …), answered by Poold in the session, in both protocols.</summary>
internal sealed partial class ClientSession : IPoolCommandSession, ISessionClient
{
    public Dictionary<string, string> PoolOverrides => _poolOverrides ??= new(StringComparer.Ordinal);

    /// <summary>Made at the first pgpool_set (and <see cref="_poolStatementsMade"/> at the first Poold statement parsed): an idle session holds neither.</summary>
    private Dictionary<string, string>? _poolOverrides;

    private PoolResult RunPoolCommand(string sql) =>
        PoolCommands.Execute(sql, _services.Settings, _services.Nodes.Current, _services.Cancels.Sessions, _services.Counters, this,
            _services.Nodes.Health, _services.Nodes.DiscoveryWarning, _services.Pool.SharedPools());

    /// <summary>A simple Query that is a pool command: RowDescription, DataRows, CommandComplete (or ErrorResponse), ReadyForQuery.</summary>
    public bool TryAnswerPoolQuery(ReadOnlySpan<byte> query)
    {
        if (!PoolCommands.MightBePoolCommand(query) || Encoding.UTF8.GetString(query) is not { } sql || !PoolCommands.IsPoolCommand(sql))
        {
            return false;
        }

        var result = RunPoolCommand(sql);
        var buffer = new MessageBuffer(1024);
        AppendResult(buffer, result, describe: true);
        buffer.ReadyForQuery(_backendSide.VisibleStatus());
        _backendSide.EnqueueSynthetic(buffer.Written.ToArray());
        return true;
    }

    /// <summary>An extended-protocol batch made only of pool commands: Poold answers every message itself.</summary>
    public bool TryAnswerPoolBatch(List<BatchMessage> messages, bool sync)
    {
        if (!IsPoolBatch(messages))
        {
            return false;
        }

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
            buffer.ReadyForQuery(_backendSide.VisibleStatus());
        }

        _backendSide.EnqueueSynthetic(buffer.Written.ToArray());
        return true;
    }

    /// <summary>Only pool commands (SHOW POOL_NODES …) parsed, and only those bound: Poold answers the batch itself.</summary>
    private bool IsPoolBatch(List<BatchMessage> messages)
    {
        var anyPoolCommand = false;
        foreach (var m in messages)
        {
            if (m.Code == (byte)FrontendCode.Parse)
            {
                // No text kept: the statement did not look like a pool command (PoolCommands.MightBePoolCommand).
                if (m.Query is not { } query || !PoolCommands.IsPoolCommand(query))
                {
                    return false;
                }

                anyPoolCommand = true;
            }
        }

        if (!anyPoolCommand)
        {
            return false;
        }

        foreach (var m in messages)
        {
            if (m.Code == (byte)FrontendCode.Bind && !(_poolStatementsMade?.ContainsKey(m.StatementName) ?? false) && !StatementRegistry.ParsedBefore(messages, m.StatementName, messages.Count))
            {
                return false;
            }
        }

        return true;
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
}
