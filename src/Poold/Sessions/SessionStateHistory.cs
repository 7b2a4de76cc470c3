using System.Text;
using Poold.Protocol;
using Poold.Routing;

namespace Poold.Sessions;

/// <summary>
/// What the client set in its session (SET, RESET, DISCARD outside SET LOCAL), one entry per parameter, in order: the
/// backend side replays it on every server connection that joins the session later (a standby first used mid-session,
/// or, in transaction mode, whichever connection runs the client's next transaction). In transaction mode the client's
/// startup parameters other than user, database and options are its first entries: a server connection is opened with
/// the pool's key only, and gets the client's application_name, client_encoding, DateStyle … as SET commands. Owned by
/// one session; used from its client side only.
/// </summary>
internal sealed class SessionStateHistory
{
    /// <summary>The startup entries: shared with every session that logged in with the same parameters.</summary>
    private StartupState _startup = StartupState.None;

    /// <summary>The entries, once they differ from <see cref="_startup"/>'s (an idle client that set nothing keeps none of its own).</summary>
    private List<HistoryEntry>? _entries;
    private string _stateText = "";
    private int _stateTextVersion = -1;

    /// <summary>Changes whenever an entry is added or removed: a link whose applied version differs needs a replay.</summary>
    public int Version { get; private set; }

    public IReadOnlyList<HistoryEntry> Entries => (IReadOnlyList<HistoryEntry>?)_entries ?? _startup.Entries;

    /// <summary>Transaction mode: the startup parameters that are not the pool's key become the first entries (and what a reset goes back to).</summary>
    public void Seed(IEnumerable<KeyValuePair<string, string>> parameters)
    {
        _startup = StartupState.For(parameters);
        _entries = null;
        Version++;
    }

    /// <summary>Records a statement that changes session state; false for anything else (SET LOCAL, queries).</summary>
    public bool Record(Classification c, string sql)
    {
        if (c.Target != RouteTarget.SessionState || (c.SettingKey is null && !c.ResetsSession))
        {
            return false;
        }

        if (c.ResetsSession || _entries is null)
        {
            // What the client's startup packet set is its reset value, as on a direct connection.
            _entries = [.. _startup.Entries];
        }

        if (!c.ResetsSession)
        {
            // A loop, not RemoveAll with a lambda: the lambda's closure over c would be allocated on every call, early
            // return or not (every statement of a transaction-mode session comes through here).
            var key = c.SettingKey;
            for (var i = _entries.Count - 1; i >= 0; i--)
            {
                if (_entries[i].Key == key)
                {
                    _entries.RemoveAt(i);
                }
            }
        }

        _entries.Add(StartupValue(c) ?? new HistoryEntry(c.SettingKey, sql, QueryFrame(sql), c.Deallocates == "*"));
        Version++;
        return true;
    }

    /// <summary>
    /// Transaction mode: for a RESET or SET … TO DEFAULT of a parameter the client's startup packet set, the SET of that
    /// startup value. On a shared server connection the server would go back to the value the connection started with
    /// (the pool's), not the client's; this is what the client's statement means on a connection of its own.
    /// </summary>
    public HistoryEntry? StartupValue(Classification c)
    {
        if (!c.ToDefault || c.MultiStatement || c.Target != RouteTarget.SessionState || c.SettingKey is not { } key)
        {
            return null;
        }

        foreach (var entry in _startup.Entries)
        {
            if (entry.Key == key)
            {
                return entry;
            }
        }

        return null;
    }

    /// <summary>The entries as they are now, for <see cref="Restore"/> (a copy: <see cref="Record"/> changes the list in place).</summary>
    public Saved Save() => new(_entries is null ? null : [.. _entries]);

    /// <summary>Back to what <see cref="Save"/> kept: the statements recorded since did not take effect on the server.</summary>
    public void Restore(Saved saved)
    {
        _entries = saved.Entries;
        Version++;
    }

    /// <summary>The entries at one moment (null: the startup ones).</summary>
    public sealed record Saved(List<HistoryEntry>? Entries);

    /// <summary>
    /// The session's SET commands as one string: what a shared server connection carries when it has exactly this
    /// client's state (compared with <see cref="Pooling.BackendConnection.AppliedState"/>). Resets are left out: a
    /// connection that gets this state is reset first.
    /// </summary>
    public string StateText
    {
        get
        {
            if (_entries is null)
            {
                return _startup.StateText;
            }

            if (_stateTextVersion != Version)
            {
                _stateText = Text(_entries);
                _stateTextVersion = Version;
            }

            return _stateText;
        }
    }

    private static string Text(IEnumerable<HistoryEntry> entries)
    {
        var text = new StringBuilder();
        foreach (var entry in entries)
        {
            if (IsState(entry))
            {
                text.Append(entry.Sql).Append(';');
            }
        }

        return text.ToString();
    }

    /// <summary>An entry that sets something (not a RESET ALL / DISCARD ALL, which the connection's own reset covers).</summary>
    public static bool IsState(HistoryEntry entry) => entry.Key is not null && !entry.DropsStatements;

    public static byte[] QueryFrame(string sql)
    {
        var buffer = new MessageBuffer(sql.Length + 16);
        buffer.Query(sql);
        return buffer.Written.ToArray();
    }

    /// <summary>
    /// The SET commands of one set of startup parameters and their <see cref="StateText"/>, immutable and shared: ten
    /// thousand clients of one application log in with the same application_name, client_encoding, DateStyle …, and
    /// each would otherwise keep its own copy of the commands, their frames and the text (about 400 bytes a client).
    /// Only sets of at most <see cref="MaxSharedLength"/> characters are shared, and at most <see cref="MaxShared"/> of
    /// them are kept (a few megabytes at most); when that many are, the cache starts again empty (sessions keep what
    /// they have), so sets that come and go (an application_name with a pid in it) cannot keep the ones in steady use
    /// out.
    /// </summary>
    private sealed class StartupState
    {
        private const int MaxShared = 1024;
        private const int MaxSharedLength = 1024;
        private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, StartupState> Shared = new(StringComparer.Ordinal);

        /// <summary>About how many sets <see cref="Shared"/> holds (its own Count takes every lock of the dictionary).</summary>
        private static int _sharedCount;

        public static readonly StartupState None = new([]);

        private StartupState(HistoryEntry[] entries)
        {
            Entries = entries;
            StateText = Text(entries);
        }

        public HistoryEntry[] Entries { get; }

        public string StateText { get; }

        public static StartupState For(IEnumerable<KeyValuePair<string, string>> parameters)
        {
            var list = parameters.ToList();
            if (list.Count == 0)
            {
                return None;
            }

            var key = new StringBuilder();
            foreach (var (name, value) in list)
            {
                key.Append(name).Append('\0').Append(value).Append('\0');
            }

            var text = key.ToString();
            if (Shared.TryGetValue(text, out var shared))
            {
                return shared;
            }

            var made = new StartupState([.. list.Select(p => Entry(p.Key, p.Value))]);
            if (text.Length > MaxSharedLength)
            {
                return made;
            }

            if (Interlocked.Increment(ref _sharedCount) > MaxShared)
            {
                Shared.Clear();
                Volatile.Write(ref _sharedCount, 1);
            }

            return Shared.GetOrAdd(text, made);
        }

        private static HistoryEntry Entry(string name, string value)
        {
            var sql = $"SET \"{name.Replace("\"", "\"\"", StringComparison.Ordinal)}\" TO '{value.Replace("'", "''", StringComparison.Ordinal)}'";
            return new HistoryEntry(name.ToLowerInvariant(), sql, QueryFrame(sql), DropsStatements: false, FromStartup: true);
        }
    }
}
