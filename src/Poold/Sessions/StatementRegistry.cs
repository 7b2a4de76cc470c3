using System.Buffers.Binary;
using Poold.Pooling;
using Poold.Protocol;
using Poold.Routing;

namespace Poold.Sessions;

/// <summary>
/// The backend side's map from a client's named statements and portals to what exists on each server connection it
/// uses. The client parses a statement once; the registry keeps its Parse frame, knows on which connections it exists
/// (<see cref="NodeLink.Statements"/>), and says what must be sent ahead of a batch so that every statement the batch
/// binds exists where it runs: a Parse where it is missing, a Close where the client closed it elsewhere, and, on a
/// shared server connection (transaction mode), a Close of another client's statement of the same name or of the
/// least recently used ones past <c>max_prepared_statements</c>. On a shared connection a statement is reused when its
/// Parse frame is byte for byte the client's own. Owned by one session; used from its client side only.
/// </summary>
internal sealed class StatementRegistry(TimeProvider time)
{
    /// <summary>Made at the first Parse (and Bind): a session of simple queries never needs them.</summary>
    private Dictionary<string, PreparedStatement>? _statementsMade;
    private Dictionary<string, NodeLink>? _portalsMade;

    private Dictionary<string, PreparedStatement> Statements => _statementsMade ??= new(StringComparer.Ordinal);

    private Dictionary<string, NodeLink> Portals => _portalsMade ??= new(StringComparer.Ordinal);

    /// <summary>The classification of the client's statement <paramref name="name"/>, or null when it has none of that name.</summary>
    public Classification? Find(string name) => _statementsMade is { } made && made.TryGetValue(name, out var s) ? s.Classification : null;

    /// <summary>The client's statement <paramref name="name"/>, when it has one.</summary>
    public bool TryGet(string name, out PreparedStatement statement)
    {
        statement = null!;
        return _statementsMade is { } made && made.TryGetValue(name, out statement!);
    }

    /// <summary>The link a portal was bound on (its Execute must go there), or null.</summary>
    public NodeLink? PortalHolder(string portal) => _portalsMade is { } made && made.TryGetValue(portal, out var holder) ? holder : null;

    /// <summary>Portals end with their transaction: once a transaction-mode session gives its connections back, none is left.</summary>
    public void ForgetPortals() => _portalsMade?.Clear();

    /// <summary>
    /// Transaction mode, between transactions: the client's DEALLOCATE of its own statement (null: all of its named
    /// ones; the unnamed statement stays, as on the server); false when it has no such statement.
    /// </summary>
    public bool Forget(string? name)
    {
        if (name is null)
        {
            if (_statementsMade is { } all)
            {
                foreach (var key in all.Keys.Where(k => k.Length > 0).ToList())
                {
                    all.Remove(key);
                }
            }

            return true;
        }

        return _statementsMade is { } made && made.Remove(name);
    }

    /// <summary>The portals bound on <paramref name="link"/>, which the session no longer holds.</summary>
    public void ForgetPortals(NodeLink link)
    {
        if (_portalsMade is not { Count: > 0 } made)
        {
            return;
        }

        foreach (var (name, holder) in made)
        {
            if (holder == link)
            {
                made.Remove(name);
            }
        }
    }

    /// <summary>Transaction mode, a server connection just bound: which of the client's statements it already has (the same Parse).</summary>
    public void Adopt(NodeLink link)
    {
        var connection = link.Connection;
        if (connection.PreparedUncertain)
        {
            link.DropAllStatements = true;
            return;
        }

        if (_statementsMade is null)
        {
            return;
        }

        foreach (var (name, statement) in _statementsMade)
        {
            if (connection.Prepared.TryGetValue(name, out var onServer) && onServer.ParseFrame.AsSpan().SequenceEqual(statement.ParseFrame))
            {
                link.Statements.Add(name);
            }
        }
    }

    /// <summary>
    /// The frames to send on <paramref name="link"/> ahead of a batch, in order, and so how many ParseComplete/CloseComplete
    /// replies at the head of its answer are Poold's (the count of frames added to <paramref name="frames"/>).
    /// </summary>
    public void CatchUp(NodeLink link, List<BatchMessage> messages, bool shared, int cap, List<byte[]> frames)
    {
        var connection = link.Connection;
        if (link.HasStaleStatements)
        {
            foreach (var stale in link.StaleStatements)
            {
                frames.Add(CloseFrame(stale));
                connection.Prepared.Remove(stale);
                link.Statements.Remove(stale);
            }

            link.StaleStatements.Clear();
        }
        if (shared)
        {
            MakeRoom(link, messages, cap, frames);
        }

        var now = time.GetTimestamp();
        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Code == (byte)FrontendCode.Parse)
            {
                if (m.Name.Length > 0 && !link.Statements.Contains(m.Name) && Statements.TryGetValue(m.Name, out var existing)
                    && !existing.Unconfirmed && !ParsedBefore(messages, m.Name, i) && !ClosedBefore(messages, m.Name, i))
                {
                    // A second Parse of a name the client has, on a connection without it: the client's statement is
                    // parsed here first, so that the server refuses the new one (42P05), as it would the client alone.
                    ParseHere(link, existing, shared, now, frames);
                }

                continue;
            }

            if (m.Code is not ((byte)FrontendCode.Bind or (byte)FrontendCode.Describe) || (m.Code == (byte)FrontendCode.Describe && m.StatementName != "S"))
            {
                continue;
            }

            var name = m.Code == (byte)FrontendCode.Bind ? m.StatementName : m.Name;
            if (shared && name.Length > 0 && !ParsedBefore(messages, name, i) && !Statements.ContainsKey(name) && connection.Prepared.Remove(name))
            {
                // The client has no statement of that name (it deallocated it, or never made it), but another client left
                // one here: closed first, so the server answers as it would the client alone (26000), and runs nothing.
                frames.Add(CloseFrame(name));
                link.Statements.Remove(name);
                continue;
            }

            if (!link.Statements.Contains(name) && !ParsedBefore(messages, name, i) && Statements.TryGetValue(name, out var statement))
            {
                ParseHere(link, statement, shared, now, frames);
            }
            else if (shared && connection.Prepared.TryGetValue(name, out var used))
            {
                used.LastUsed = now;
            }
        }
    }

    /// <summary>The client's <paramref name="statement"/>, parsed on <paramref name="link"/> ahead of a batch.</summary>
    private static void ParseHere(NodeLink link, PreparedStatement statement, bool shared, long now, List<byte[]> frames)
    {
        var connection = link.Connection;
        var name = statement.Name;
        if (shared && connection.Prepared.Remove(name))
        {
            // Another client's statement of that name lives on this connection: closed, then this one's parsed.
            frames.Add(CloseFrame(name));
        }

        frames.Add(statement.ParseFrame);
        link.Statements.Add(name);
        if (shared && name.Length > 0)
        {
            connection.Prepared[name] = new ServerStatement(statement.ParseFrame, now);
            link.ParsedSinceBound = true;
        }
    }

    /// <summary>
    /// Before a batch adds statements to a full shared connection, the least recently used ones the batch does not need
    /// are closed (the client keeps them: they are parsed again where it binds them). A name the batch parses anew that
    /// another client left here is closed first.
    /// </summary>
    private static void MakeRoom(NodeLink link, List<BatchMessage> messages, int cap, List<byte[]> frames)
    {
        var connection = link.Connection;
        var adding = 0;
        foreach (var m in messages)
        {
            if (m.Code == (byte)FrontendCode.Parse && m.Name.Length > 0)
            {
                if (!link.Statements.Contains(m.Name) && connection.Prepared.Remove(m.Name))
                {
                    frames.Add(CloseFrame(m.Name));
                }

                adding++;
            }
            else if (m.Code is (byte)FrontendCode.Bind && !link.Statements.Contains(m.StatementName))
            {
                adding++;
            }
        }

        if (cap <= 0 || adding == 0 || connection.Prepared.Count + adding <= cap)
        {
            return;
        }

        var needed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var m in messages)
        {
            needed.Add(m.Code == (byte)FrontendCode.Bind ? m.StatementName : m.Name);
        }

        var victims = connection.Prepared.Where(p => !needed.Contains(p.Key)).OrderBy(p => p.Value.LastUsed)
            .Take(connection.Prepared.Count + adding - cap).Select(p => p.Key).ToList();
        foreach (var name in victims)
        {
            frames.Add(CloseFrame(name));
            connection.Prepared.Remove(name);
            link.Statements.Remove(name);
        }
    }

    /// <summary>
    /// What a batch sent on <paramref name="link"/> created and closed (its frames are <paramref name="written"/>). Each
    /// named statement it parses or closes, and each DEALLOCATE it binds, is added to <paramref name="made"/> (when
    /// given) with the number of the client's ParseComplete/CloseComplete replies due before its own
    /// (<paramref name="completesBefore"/> from earlier parts of the batch): the server's answer decides what came of
    /// it (<see cref="Settle"/>). Without <paramref name="made"/>, everything is taken to have run.
    /// </summary>
    public void AfterBatch(NodeLink link, IEnumerable<NodeLink> links, List<BatchMessage> messages, ReadOnlySpan<byte> written, bool shared,
        int completesBefore = 0, List<ParsedStatement>? made = null)
    {
        var offset = 0;
        var completes = completesBefore;
        foreach (var m in messages)
        {
            var length = BinaryPrimitives.ReadInt32BigEndian(written[(offset + 1)..]);
            switch (m.Code)
            {
                case (byte)FrontendCode.Parse:
                    var complete = completes++;
                    var parse = written.Slice(offset, 1 + length);
                    if (m.Name.Length > 0 && Statements.TryGetValue(m.Name, out var existing) && !existing.Unconfirmed)
                    {
                        // The client has a statement of that name, and CatchUp made sure this connection has it too: the
                        // server should refuse the Parse (42P05), and the client's statement stays as it is. Should the
                        // server take it (the name was free there after all), Settle makes it the client's statement;
                        // on a shared connection, what the connection holds under that name is then unknown to the pool.
                        made?.Add(new ParsedStatement(complete, new PreparedStatement(m.Name, parse.ToArray(), m.Classification!), existing, link,
                            StatementChange.Duplicate));
                        if (shared)
                        {
                            link.Connection.PreparedUncertain = true;
                        }

                        break;
                    }

                    var previous = Statements.GetValueOrDefault(m.Name);
                    var known = previous;
                    if (known is null || known.Unconfirmed || !parse.SequenceEqual(known.ParseFrame))
                    {
                        Statements[m.Name] = known = new PreparedStatement(m.Name, parse.ToArray(), m.Classification!);
                    }

                    if (made is not null && m.Name.Length > 0)
                    {
                        known.Unconfirmed = true;
                        made.Add(new ParsedStatement(complete, known, previous, link));
                    }

                    foreach (var other in links)
                    {
                        if (other != link && other.Statements.Remove(m.Name) && m.Name.Length > 0)
                        {
                            other.StaleStatements.Add(m.Name);
                        }
                    }

                    link.Statements.Add(m.Name);
                    link.StaleStatements.Remove(m.Name);
                    if (shared && m.Name.Length > 0)
                    {
                        link.Connection.Prepared[m.Name] = new ServerStatement(known.ParseFrame, time.GetTimestamp());
                        link.ParsedSinceBound = true;
                    }

                    break;
                case (byte)FrontendCode.Bind:
                    Portals[m.Name] = link;
                    if (Statements.TryGetValue(m.StatementName, out var bound) && bound.Classification is { Deallocates: { } gone, MultiStatement: false })
                    {
                        // Applied now, in the batch's order (a Parse after it in the batch stays); should the server not
                        // run it (a failed transaction, say), Settle puts the statements back.
                        var removed = Deallocated(gone, link, links);
                        made?.Add(new ParsedStatement(completes, bound, null, link, StatementChange.Deallocate, removed));
                    }

                    break;
                case (byte)FrontendCode.Close when m.StatementName == "S":
                    if (made is not null && m.Name.Length > 0 && Statements.TryGetValue(m.Name, out var closed))
                    {
                        // Should the server skip the Close (an error earlier in the batch), the statement is still there
                        // (on this connection, if it was there).
                        made.Add(new ParsedStatement(completes, closed, null, link, StatementChange.Close, LinkHeld: link.Statements.Contains(m.Name)));
                    }

                    completes++;
                    if (shared && m.Name.Length > 0)
                    {
                        // A failure before the Close leaves the statement on the server: its next client drops them all first.
                        link.ParsedSinceBound = true;
                    }

                    Statements.Remove(m.Name);
                    link.Connection.Prepared.Remove(m.Name);
                    foreach (var other in links)
                    {
                        if (other.Statements.Remove(m.Name) && other != link)
                        {
                            other.StaleStatements.Add(m.Name);
                        }
                    }

                    break;
                case (byte)FrontendCode.Close:
                    completes++;
                    Portals.Remove(m.Name);
                    break;
            }

            offset += 1 + length;
        }
    }

    /// <summary>
    /// The server answered a batch that changed the client's statements (<paramref name="changes"/>, in the batch's
    /// order; <paramref name="answered"/> of the client's ParseComplete/CloseComplete replies came, all of them unless
    /// <paramref name="failed"/>: the server skips everything after an error up to the Sync).
    /// <list type="bullet">
    /// <item>A Parse answered is confirmed. One that was not (refused, or skipped) made no statement: the client has
    /// none of that name, as on the server, and its Bind gets the server's 26000 rather than the Parse's error again; the
    /// connection it was sent on closes the name before its next use (a Close of a statement that does not exist is no
    /// error), in case an earlier statement of that name is there.</item>
    /// <item>A second Parse of a name the client has (<see cref="StatementChange.Duplicate"/>) that the server took after
    /// all (the name was free there) becomes the client's statement, on that connection only.</item>
    /// <item>A Close the server skipped leaves the statement the client had: it is put back (Npgsql, reusing an
    /// auto-prepare slot, closes and parses a name in one batch, and binds the old statement again when that batch fails).</item>
    /// <item>A DEALLOCATE is applied as the batch is sent. When its batch failed and nothing after it was answered,
    /// whether it ran is not known: the statements it dropped are put back, unconfirmed (neither trusted nor dropped),
    /// and every connection closes them before its next use, so that a Bind parses them again where it runs.</item>
    /// </list>
    /// </summary>
    public void Settle(List<ParsedStatement> changes, bool failed, int answered, IEnumerable<NodeLink> links)
    {
        for (var i = 0; i < changes.Count; i++)
        {
            var change = changes[i];
            var statement = change.Statement;
            var name = statement.Name;
            var ran = !failed || change.Complete < answered;
            switch (change.Change)
            {
                case StatementChange.Deallocate:
                    if (!failed || change.Complete < answered)
                    {
                        // It ran: something after it in the batch was answered, or nothing failed.
                        break;
                    }

                    foreach (var dropped in change.Removed!)
                    {
                        if (dropped.Refused)
                        {
                            continue;
                        }

                        if (Statements.TryGetValue(dropped.Name, out var newer) && !ParsedLater(changes, i, newer))
                        {
                            // Parsed again by a later batch: that one stands. The old one may still be on this connection.
                            if (!change.Link.Statements.Contains(dropped.Name))
                            {
                                change.Link.StaleStatements.Add(dropped.Name);
                            }

                            continue;
                        }

                        // Back, as neither trusted nor dropped (a Parse of the name later in this batch did not run
                        // either), and closed on that connection before its next use: parsed again where it is bound.
                        Statements[dropped.Name] = dropped;
                        dropped.Unconfirmed = true;
                        change.Link.Statements.Remove(dropped.Name);
                        change.Link.StaleStatements.Add(dropped.Name);
                    }

                    break;
                case StatementChange.Close when !ran:
                    if (!statement.Refused && (!Statements.TryGetValue(name, out var now) || ParsedLater(changes, i, now)))
                    {
                        Statements[name] = statement;
                        if (change.LinkHeld)
                        {
                            change.Link.Statements.Add(name);
                            change.Link.StaleStatements.Remove(name);
                        }
                    }
                    else if (change.LinkHeld && !change.Link.Statements.Contains(name))
                    {
                        // Not put back, yet still on the server there: closed before that connection's next use.
                        change.Link.StaleStatements.Add(name);
                    }

                    break;
                case StatementChange.Close:
                    break;
                case StatementChange.Duplicate:
                    statement.Unconfirmed = false;
                    if (ran && (!Statements.TryGetValue(name, out var kept) || ReferenceEquals(kept, change.Previous)) && !RemovedLater(changes, i, name))
                    {
                        Statements[name] = statement;
                        foreach (var other in links)
                        {
                            if (other != change.Link && other.Statements.Remove(name))
                            {
                                other.StaleStatements.Add(name);
                            }
                        }

                        change.Link.Statements.Add(name);
                    }

                    break;
                default:
                    statement.Unconfirmed = false;
                    if (!ran)
                    {
                        Refuse(change);
                    }

                    break;
            }
        }
    }

    /// <summary>Whether <paramref name="statement"/> is one a Parse after change <paramref name="at"/> of the same batch made.</summary>
    private static bool ParsedLater(List<ParsedStatement> changes, int at, PreparedStatement statement)
    {
        for (var i = at + 1; i < changes.Count; i++)
        {
            if (changes[i].Change == StatementChange.Parse && ReferenceEquals(changes[i].Statement, statement))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether a Close or DEALLOCATE after change <paramref name="at"/> of the same batch removed <paramref name="name"/>.</summary>
    private static bool RemovedLater(List<ParsedStatement> changes, int at, string name)
    {
        for (var i = at + 1; i < changes.Count; i++)
        {
            if (changes[i] is { Change: StatementChange.Close } close && close.Statement.Name == name
                || changes[i] is { Change: StatementChange.Deallocate, Removed: { } removed } && removed.Exists(r => r.Name == name))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>A Parse the server did not run: the statement never existed.</summary>
    private void Refuse(ParsedStatement parsed)
    {
        var statement = parsed.Statement;
        var name = statement.Name;
        statement.Refused = true;
        if (!Statements.TryGetValue(name, out var current) || !ReferenceEquals(current, statement))
        {
            // Replaced since by a later Parse of the name (or put back by a Close the server skipped): settled on its own.
            return;
        }

        if (parsed.Previous is { Refused: false } previous)
        {
            Statements[name] = previous;
        }
        else
        {
            Statements.Remove(name);
        }

        if (parsed.Link.Statements.Remove(name))
        {
            parsed.Link.StaleStatements.Add(name);
        }
    }

    /// <summary>
    /// The registry can no longer trust that the server holds the client's statements (a query string of several
    /// statements with a DEALLOCATE or DISCARD among them): a second Parse of one of their names is sent as it is, for
    /// the server to judge, rather than refused with the statement Poold knows.
    /// </summary>
    public void Unsure()
    {
        if (_statementsMade is { } all)
        {
            foreach (var statement in all.Values)
            {
                statement.Unconfirmed = true;
            }
        }
    }

    /// <summary>
    /// A DEALLOCATE of <paramref name="name"/> (DEALLOCATE ALL or DISCARD ALL: "*") bound on <paramref name="ranOn"/>: the
    /// client's statement is forgotten there, as on the server; any other connection closes its copy before its next
    /// batch. Returns the client's statements it dropped.
    /// </summary>
    private List<PreparedStatement> Deallocated(string name, NodeLink ranOn, IEnumerable<NodeLink> links)
    {
        var all = name == "*";
        var removed = new List<PreparedStatement>();
        if (all)
        {
            removed.AddRange(Statements.Values.Where(v => v.Name.Length > 0));
            Forget(null);
        }
        else if (Statements.Remove(name, out var one))
        {
            removed.Add(one);
        }

        foreach (var link in links)
        {
            foreach (var held in link.Statements.Where(n => n.Length > 0 && (all || n == name)).ToList())
            {
                link.Statements.Remove(held);
                if (link != ranOn)
                {
                    link.StaleStatements.Add(held);
                }
            }
        }

        return removed;
    }

    /// <summary>
    /// SQL DEALLOCATE (or DEALLOCATE ALL / DISCARD ALL, <paramref name="name"/> "*"): returns the node that must run it
    /// (where the statement lives; a protocol-level statement may live on a replica); every other holder drops it
    /// before its next batch.
    /// </summary>
    public int Deallocate(string name, int chosen, IReadOnlyCollection<NodeLink> links, NodeLink? primary)
    {
        if (name == "*")
        {
            Statements.Clear();
            foreach (var link in links)
            {
                if (link.Connection.NodeId != chosen)
                {
                    // Their copies go when the DEALLOCATE ALL / DISCARD ALL is replayed there (session state).
                    foreach (var statement in link.Statements.Where(n => n.Length > 0))
                    {
                        link.StaleStatements.Add(statement);
                    }
                }
                else
                {
                    link.Connection.Prepared.Clear();
                }

                link.Statements.Clear();
            }

            return chosen;
        }

        var holders = links.Where(l => l.Statements.Contains(name)).ToList();
        if (holders.Count == 0)
        {
            // No connection of the session's has it now: forgotten all the same (the client deallocated it), so that its
            // next Parse of the name is not refused with a copy of the old one.
            Statements.Remove(name);
            return chosen;
        }

        var target = holders.FirstOrDefault(l => l == primary) ?? holders[0];
        Statements.Remove(name);
        target.Connection.Prepared.Remove(name);
        foreach (var holder in holders)
        {
            holder.Statements.Remove(name);
            if (holder != target)
            {
                holder.StaleStatements.Add(name);
            }
        }

        return target.Connection.NodeId;
    }

    /// <summary>Whether a Parse of <paramref name="name"/> comes before message <paramref name="before"/> in the batch.</summary>
    public static bool ParsedBefore(List<BatchMessage> messages, string name, int before) => ParseIndex(messages, name, before) >= 0;

    /// <summary>The index of the last Parse of <paramref name="name"/> before message <paramref name="before"/>, or -1.</summary>
    public static int ParseIndex(List<BatchMessage> messages, string name, int before)
    {
        for (var i = Math.Min(before, messages.Count) - 1; i >= 0; i--)
        {
            if (messages[i].Code == (byte)FrontendCode.Parse && messages[i].Name == name)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>Whether a Close of the statement <paramref name="name"/> comes before message <paramref name="before"/> in the batch.</summary>
    private static bool ClosedBefore(List<BatchMessage> messages, string name, int before)
    {
        for (var i = Math.Min(before, messages.Count) - 1; i >= 0; i--)
        {
            if (messages[i] is { Code: (byte)FrontendCode.Close, StatementName: "S" } close && close.Name == name)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The statement a Parse or a Close (of a statement) frame names.</summary>
    public static string StatementNameOf(byte[] frame)
    {
        var start = frame[0] == (byte)FrontendCode.Close ? 6 : 5;
        var end = Array.IndexOf(frame, (byte)0, start);
        return System.Text.Encoding.UTF8.GetString(frame, start, end - start);
    }

    public static byte[] CloseFrame(string statement)
    {
        var buffer = new MessageBuffer(statement.Length + 16);
        buffer.Begin((byte)FrontendCode.Close).WriteByte((byte)'S').WriteCString(statement).End();
        return buffer.Written.ToArray();
    }
}

/// <summary>
/// A change a batch made to the client's statements, until the server answers: <see cref="Complete"/> of the client's
/// ParseComplete/CloseComplete replies come before its own (or, for a DEALLOCATE, before its Bind). For a Parse,
/// <see cref="Previous"/> is the client's statement of that name it replaced; for a <see cref="StatementChange.Duplicate"/>,
/// the one the client keeps; for a Close, <see cref="Statement"/> is the one closed and <see cref="LinkHeld"/> whether its
/// connection had it; for a DEALLOCATE, the statement that runs it, and <see cref="Removed"/> the client's statements it dropped.
/// </summary>
internal readonly record struct ParsedStatement(int Complete, PreparedStatement Statement, PreparedStatement? Previous, NodeLink Link,
    StatementChange Change = StatementChange.Parse, List<PreparedStatement>? Removed = null, bool LinkHeld = false);

internal enum StatementChange : byte
{
    Parse,

    /// <summary>A second Parse of a name the client has: the server should refuse it (42P05).</summary>
    Duplicate,

    /// <summary>A Close of a statement.</summary>
    Close,

    /// <summary>A DEALLOCATE (or DISCARD ALL) bound.</summary>
    Deallocate,
}
