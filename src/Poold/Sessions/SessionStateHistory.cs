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
    private readonly List<HistoryEntry> _entries = [];
    private readonly List<HistoryEntry> _startup = [];
    private string _stateText = "";
    private int _stateTextVersion = -1;

    /// <summary>Changes whenever an entry is added or removed: a link whose applied version differs needs a replay.</summary>
    public int Version { get; private set; }

    public IReadOnlyList<HistoryEntry> Entries => _entries;

    /// <summary>Transaction mode: the startup parameters that are not the pool's key become the first entries (and what a reset goes back to).</summary>
    public void Seed(IEnumerable<KeyValuePair<string, string>> parameters)
    {
        foreach (var (name, value) in parameters)
        {
            var sql = $"SET \"{name.Replace("\"", "\"\"", StringComparison.Ordinal)}\" TO '{value.Replace("'", "''", StringComparison.Ordinal)}'";
            _startup.Add(new HistoryEntry(name.ToLowerInvariant(), sql, QueryFrame(sql), DropsStatements: false, FromStartup: true));
        }

        _entries.AddRange(_startup);
        Version++;
    }

    /// <summary>Records a statement that changes session state; false for anything else (SET LOCAL, queries).</summary>
    public bool Record(Classification c, string sql)
    {
        if (c.Target != RouteTarget.SessionState || (c.SettingKey is null && !c.ResetsSession))
        {
            return false;
        }

        if (c.ResetsSession)
        {
            // What the client's startup packet set is its reset value, as on a direct connection.
            _entries.Clear();
            _entries.AddRange(_startup);
        }
        else
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

        _entries.Add(new HistoryEntry(c.SettingKey, sql, QueryFrame(sql), c.Deallocates == "*"));
        Version++;
        return true;
    }

    /// <summary>
    /// The session's SET commands as one string: what a shared server connection carries when it has exactly this
    /// client's state (compared with <see cref="Pooling.BackendConnection.AppliedState"/>). Resets are left out: a
    /// connection that gets this state is reset first.
    /// </summary>
    public string StateText
    {
        get
        {
            if (_stateTextVersion != Version)
            {
                var text = new StringBuilder();
                foreach (var entry in _entries)
                {
                    if (IsState(entry))
                    {
                        text.Append(entry.Sql).Append(';');
                    }
                }

                _stateText = text.ToString();
                _stateTextVersion = Version;
            }

            return _stateText;
        }
    }

    /// <summary>An entry that sets something (not a RESET ALL / DISCARD ALL, which the connection's own reset covers).</summary>
    public static bool IsState(HistoryEntry entry) => entry.Key is not null && !entry.DropsStatements;

    public static byte[] QueryFrame(string sql)
    {
        var buffer = new MessageBuffer(sql.Length + 16);
        buffer.Query(sql);
        return buffer.Written.ToArray();
    }
}
