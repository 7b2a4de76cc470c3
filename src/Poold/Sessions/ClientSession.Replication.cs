using Poold.Protocol;

namespace Poold.Sessions;

/// <summary>What a startup packet's <c>replication</c> parameter asks for.</summary>
internal enum ReplicationMode
{
    None,

    /// <summary><c>replication=true</c>: physical (pg_basebackup, pg_receivewal, a standby).</summary>
    Physical,

    /// <summary><c>replication=database</c>: logical (pg_recvlogical, a subscription, CDC tools).</summary>
    Logical,
}

/// <summary>
/// Replication connections (PgBouncer 1.23+ relays them; pgpool-II refuses them). The client is authenticated like any
/// other, then gets its own connection to the current primary, never taken from the cache and never returned to it:
/// client and server connection live and die together. Everything between them — replication commands, simple
/// queries, the CopyBoth sub-protocol — is passed on byte for byte; Poold routes nothing and looks into nothing.
/// After a failover the client's next connection reaches the new primary through the same address.
/// </summary>
internal sealed partial class ClientSession
{
    private ReplicationMode _replication;

    public bool IsReplication => _replication != ReplicationMode.None;

    /// <summary>PostgreSQL's values for <c>replication</c>: a boolean, or <c>database</c>.</summary>
    private static ReplicationMode ParseReplication(string value) => value.ToLowerInvariant() switch
    {
        "database" => ReplicationMode.Logical,
        "true" or "on" or "yes" or "1" => ReplicationMode.Physical,
        "false" or "off" or "no" or "0" => ReplicationMode.None,
        _ => throw new ClientFatalException(SqlState.InvalidParameterValue,
            $"invalid value for parameter \"replication\": \"{value}\"", "Valid values are: \"false\", 0, \"true\", 1, \"database\"."),
    };

    /// <summary>Two byte pumps between the client and its server connection; the first to end ends both.</summary>
    private async Task<SessionEnd> RelayReplicationAsync(CancellationToken shutdown)
    {
        var backend = _backendSide.LoginConnection!;
        LogReplicationRelay(_replication, backend.NodeId, backend.ProcessId);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
        var up = Task.Run(() => ClientToServerAsync(stop.Token), CancellationToken.None);
        var down = ServerToClientAsync(stop.Token);
        var first = await Task.WhenAny(up, down);
        stop.Cancel();
        backend.Reader.CancelPendingRead();
        await StoppedAsync(first == up ? down : up);
        var end = await first;
        return end;
    }

    private async Task<SessionEnd> ClientToServerAsync(CancellationToken stop)
    {
        var backend = _backendSide.LoginConnection!;
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var n = await _client.ReadAsync(buffer, stop);
            if (n == 0)
            {
                return SessionEnd.ClientClosed;
            }

            await backend.WriteAsync(buffer.AsMemory(0, n), stop);
            await backend.FlushAsync(stop);
        }
    }

    private async Task<SessionEnd> ServerToClientAsync(CancellationToken stop)
    {
        var reader = _backendSide.LoginConnection!.Reader;
        while (true)
        {
            var result = await reader.ReadAsync(stop);
            if (result.IsCanceled)
            {
                stop.ThrowIfCancellationRequested();
                continue;
            }

            foreach (var segment in result.Buffer)
            {
                await _output.WriteAsync(segment, stop);
            }

            await _output.FlushAsync(stop);
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                // The server ended the connection (it said why, if it did, in what was just relayed).
                return SessionEnd.Terminated;
            }
        }
    }
}
