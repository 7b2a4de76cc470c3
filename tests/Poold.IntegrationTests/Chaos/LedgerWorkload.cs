using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace Poold.IntegrationTests.Chaos;

/// <summary>
/// A TPC-B-like write load through Poold: each client loops BEGIN; UPDATE accounts; INSERT a unique id into the
/// ledger; COMMIT, plus one load-balanced read, and remembers the id of every commit the server acknowledged.
/// Clients reconnect on any error and keep going. Every round trip is timed and charged, like commits and errors, to the
/// phase current when it ended (a round trip stuck through a fault ends in that fault's phase).
/// </summary>
internal sealed class LedgerWorkload : IAsyncDisposable
{
    public const int Accounts = 100;

    private readonly string _connectionString;
    private readonly List<long>[] _acknowledged;
    private readonly Task[] _clients;
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource? _resume;
    private int _paused;
    private volatile PhaseStats _phase;

    public LedgerWorkload(string connectionString, int clients, PhaseStats first)
    {
        _connectionString = connectionString;
        _phase = first;
        _acknowledged = [.. Enumerable.Range(0, clients).Select(_ => new List<long>())];
        _clients = [.. Enumerable.Range(0, clients).Select(i => Task.Run(() => ClientAsync(i)))];
    }

    public int Clients => _clients.Length;

    public PhaseStats Phase => _phase;

    /// <summary>The ids whose COMMIT returned success; read only after <see cref="StopAsync"/>.</summary>
    public IEnumerable<long> Acknowledged => _acknowledged.SelectMany(ids => ids);

    public void Enter(PhaseStats phase)
    {
        _phase.End();
        _phase = phase;
    }

    /// <summary>Asks every client to close its connection and wait; returns once all of them have.</summary>
    public async Task PauseAsync(TimeSpan timeout)
    {
        Volatile.Write(ref _paused, 0);
        Volatile.Write(ref _resume, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        await Support.Poll.UntilAsync(() => Task.FromResult(Volatile.Read(ref _paused) == _clients.Length), timeout, "every client to pause");
    }

    public void Resume() => Interlocked.Exchange(ref _resume, null)?.SetResult();

    /// <summary>Stops the clients after their current operation; each closes its connection.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        _phase.End();
        await _stop.CancelAsync();
        Resume();
        await Task.WhenAll(_clients).WaitAsync(timeout);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromMinutes(1));
        _stop.Dispose();
    }

    private async Task ClientAsync(int client)
    {
        var random = new Random(client);
        var acknowledged = _acknowledged[client];
        NpgsqlConnection? connection = null;
        long sequence = 0;
        while (!_stop.IsCancellationRequested)
        {
            if (Volatile.Read(ref _resume) is { } resume)
            {
                await CloseAsync(connection);
                connection = null;
                Interlocked.Increment(ref _paused);
                await resume.Task;
                continue;
            }

            try
            {
                if (connection is null)
                {
                    connection = new NpgsqlConnection(_connectionString);
                    await TimedAsync("open", () => connection.OpenAsync());
                }

                var id = (client + 1) * 1_000_000_000L + ++sequence;
                var aid = random.Next(1, Accounts + 1);
                var delta = random.Next(-5000, 5001);
                await TimedAsync("BEGIN", () => ExecuteAsync(connection, "BEGIN"));
                var updated = await TimedAsync("UPDATE", () => ExecuteAsync(connection,
                    "UPDATE accounts SET balance = balance + $1 WHERE aid = $2", delta, aid));
                var inserted = await TimedAsync("INSERT", () => ExecuteAsync(connection,
                    "INSERT INTO ledger (id, client, aid, delta) VALUES ($1, $2, $3, $4)", id, client, aid, delta));
                if (updated != 1 || inserted != 1)
                {
                    throw new InvalidOperationException($"UPDATE touched {updated} rows and INSERT {inserted}");
                }

                await TimedAsync("COMMIT", () => ExecuteAsync(connection, "COMMIT"));
                acknowledged.Add(id);
                _phase.Commit();
                await TimedAsync("SELECT", () => ExecuteAsync(connection, "SELECT balance FROM accounts WHERE aid = $1", aid));
                _phase.Read();
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException or TimeoutException)
            {
                _phase.Error(e);
                await CloseAsync(connection);
                connection = null;
                try
                {
                    // A client's back-off before reconnecting, not a wait for the system under test.
                    await Task.Delay(100, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        await CloseAsync(connection);
    }

    private static async Task<int> ExecuteAsync(NpgsqlConnection connection, string sql, params object[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var parameter in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        }

        return await command.ExecuteNonQueryAsync();
    }

    private async Task TimedAsync(string label, Func<Task> operation) =>
        await TimedAsync(label, async () =>
        {
            await operation();
            return 0;
        });

    private async Task<T> TimedAsync<T>(string label, Func<Task<T>> operation)
    {
        var watch = Stopwatch.StartNew();
        var outcome = "failed";
        try
        {
            var result = await operation();
            outcome = "ok";
            return result;
        }
        finally
        {
            _phase.Operation(watch.Elapsed, $"{label} {outcome}");
        }
    }

    private static async Task CloseAsync(NpgsqlConnection? connection)
    {
        if (connection is null)
        {
            return;
        }

        try
        {
            await connection.DisposeAsync();
        }
        catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException)
        {
            // A broken connection: nothing left to close politely.
        }
    }
}

/// <summary>What the clients saw during one fault phase: acknowledged commits, reads, errors by kind, the slowest round trip.</summary>
internal sealed class PhaseStats(string name)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Dictionary<string, int> _errors = [];
    private long _commits;
    private long _reads;
    private long _operations;
    private long _maxTicks;
    private string _slowest = "";
    private TimeSpan? _duration;

    public string Name { get; } = name;

    public long Commits => Interlocked.Read(ref _commits);

    public long Operations => Interlocked.Read(ref _operations);

    public TimeSpan MaxOperation => TimeSpan.FromTicks(Interlocked.Read(ref _maxTicks));

    /// <summary>Which round trip was the slowest, and when it ended (seconds into the phase).</summary>
    public string Slowest => Volatile.Read(ref _slowest);

    public int Errors
    {
        get
        {
            lock (_errors)
            {
                return _errors.Values.Sum();
            }
        }
    }

    public void Commit() => Interlocked.Increment(ref _commits);

    public void Read() => Interlocked.Increment(ref _reads);

    public void End() => _duration ??= _clock.Elapsed;

    public void Operation(TimeSpan elapsed, string label)
    {
        Interlocked.Increment(ref _operations);
        if (elapsed.Ticks <= Interlocked.Read(ref _maxTicks))
        {
            return;
        }

        lock (_clock)
        {
            if (elapsed.Ticks > _maxTicks)
            {
                Volatile.Write(ref _maxTicks, elapsed.Ticks);
                Volatile.Write(ref _slowest, string.Create(CultureInfo.InvariantCulture, $"{label} at {_clock.Elapsed.TotalSeconds:0.0} s"));
            }
        }
    }

    public void Error(Exception e)
    {
        var kind = e switch
        {
            PostgresException p => $"{p.SqlState} {p.MessageText}",
            NpgsqlException { InnerException: { } inner } n => $"{n.Message} ({inner.GetType().Name}: {inner.Message})",
            _ => $"{e.GetType().Name}: {e.Message}",
        };
        kind = kind.Length > 110 ? kind[..110] + "…" : kind;
        lock (_errors)
        {
            _errors[kind] = _errors.GetValueOrDefault(kind) + 1;
        }
    }

    /// <summary>One markdown table row; the error kinds follow as indented lines.</summary>
    public string Describe()
    {
        var text = new StringBuilder(string.Create(CultureInfo.InvariantCulture,
            $"| {Name} | {(_duration ?? _clock.Elapsed).TotalSeconds:0.0} | {Commits} | {Interlocked.Read(ref _reads)} | {Operations} | {Errors} | {MaxOperation.TotalMilliseconds:0} ({Slowest}) |"));
        lock (_errors)
        {
            foreach (var (kind, count) in _errors.OrderByDescending(e => e.Value))
            {
                text.Append(CultureInfo.InvariantCulture, $"\n    {count} × {kind}");
            }
        }

        return text.ToString();
    }
}
