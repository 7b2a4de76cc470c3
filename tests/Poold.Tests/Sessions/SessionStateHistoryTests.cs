using Poold.Routing;
using Poold.Sessions;

namespace Poold.Tests.Sessions;

public class SessionStateHistoryTests
{
    private static bool Record(SessionStateHistory history, string sql) =>
        history.Record(QueryClassifier.Classify(sql, RoutingOptions.Default), sql);

    [Test]
    public void StartupParameters_BecomeSetCommands_QuotedSafely()
    {
        var history = new SessionStateHistory();
        history.Seed([new("application_name", "it's \"mine\""), new("DateStyle", "ISO, MDY")]);
        Assert.That(history.StateText, Is.EqualTo("SET \"application_name\" TO 'it''s \"mine\"';SET \"DateStyle\" TO 'ISO, MDY';"));
    }

    [Test]
    public void ALaterSetOfTheSameParameter_ReplacesTheEarlierOne()
    {
        var history = new SessionStateHistory();
        history.Seed([new("application_name", "app")]);
        var version = history.Version;
        Assert.That(Record(history, "SET search_path = a"), Is.True);
        Assert.That(Record(history, "SET application_name = 'other'"), Is.True);
        Assert.That(Record(history, "set search_path to b"), Is.True);
        Assert.That(history.Version, Is.GreaterThan(version));
        Assert.That(history.StateText, Is.EqualTo("SET application_name = 'other';set search_path to b;"));
    }

    [Test]
    public void ResetAll_GoesBackToTheStartupState()
    {
        var history = new SessionStateHistory();
        history.Seed([new("application_name", "app")]);
        Record(history, "SET search_path = a");
        Record(history, "SET application_name = 'other'");
        Assert.That(Record(history, "RESET ALL"), Is.True);
        Assert.That(history.StateText, Is.EqualTo("SET \"application_name\" TO 'app';"), "the reset itself is not state: a connection that gets it is reset first");
    }

    [TestCase("RESET application_name", "SET search_path = a;SET \"application_name\" TO 'app';")]
    [TestCase("SET application_name TO DEFAULT", "SET search_path = a;SET \"application_name\" TO 'app';")]
    [TestCase("RESET search_path", "")]
    public void AResetOfOneParameter_GoesBackToTheClientsStartupValue(string reset, string expected)
    {
        var history = new SessionStateHistory();
        history.Seed([new("application_name", "app")]);
        Record(history, "SET application_name = 'other'");
        Record(history, "SET search_path = a");
        Assert.That(Record(history, reset), Is.True);
        if (expected.Length == 0)
        {
            // Not a startup parameter: the client's own RESET is replayed (the server's default is the client's too).
            Assert.That(history.Entries[^1].Sql, Is.EqualTo(reset));
            Assert.That(history.StateText, Is.EqualTo("SET application_name = 'other';RESET search_path;"));
        }
        else
        {
            Assert.That(history.StateText, Is.EqualTo(expected));
        }
    }

    [Test]
    public void Restore_GoesBackToWhatWasSaved_AndChangesTheVersion()
    {
        var history = new SessionStateHistory();
        history.Seed([new("application_name", "app")]);
        Record(history, "SET search_path = a");
        var saved = history.Save();
        Record(history, "SET search_path = b");
        Record(history, "SET work_mem = '5MB'");
        var version = history.Version;
        history.Restore(saved);
        Assert.That(history.StateText, Is.EqualTo("SET \"application_name\" TO 'app';SET search_path = a;"));
        Assert.That(history.Version, Is.Not.EqualTo(version));
    }

    [TestCase("SET LOCAL search_path = a")]
    [TestCase("SELECT set_config('search_path', 'a', false)")]
    [TestCase("BEGIN")]
    public void StatementsThatAreNotSessionState_AreNotRecorded(string sql)
    {
        var history = new SessionStateHistory();
        Assert.That(Record(history, sql), Is.False);
        Assert.That(history.StateText, Is.Empty);
    }

    [Test]
    public void SessionsWithTheSameStartupParameters_ShareTheirCommands_UntilOneSetsSomething()
    {
        var first = new SessionStateHistory();
        var second = new SessionStateHistory();
        var other = new SessionStateHistory();
        first.Seed([new("application_name", "shared-app"), new("DateStyle", "ISO, MDY")]);
        second.Seed([new("application_name", "shared-app"), new("DateStyle", "ISO, MDY")]);
        other.Seed([new("application_name", "other-app"), new("DateStyle", "ISO, MDY")]);

        Assert.That(second.Entries, Is.SameAs(first.Entries), "one copy of the commands for both sessions");
        Assert.That(second.StateText, Is.SameAs(first.StateText));
        Assert.That(other.Entries, Is.Not.SameAs(first.Entries));
        Assert.That(other.StateText, Does.Contain("other-app"));

        Record(first, "SET search_path = a");
        Assert.That(first.StateText, Is.EqualTo("SET \"application_name\" TO 'shared-app';SET \"DateStyle\" TO 'ISO, MDY';SET search_path = a;"));
        Assert.That(second.StateText, Is.EqualTo("SET \"application_name\" TO 'shared-app';SET \"DateStyle\" TO 'ISO, MDY';"),
            "the other session's state is its own");
        Assert.That(second.Entries.Select(e => e.Sql), Has.None.Contains("search_path"));

        Record(first, "SET application_name = 'mine'");
        Record(first, "RESET ALL");
        Assert.That(first.StateText, Is.EqualTo(second.StateText), "a reset goes back to the shared startup commands");
        Assert.That(first.Entries.Select(e => e.Key), Is.EqualTo(new[] { "application_name", "datestyle", null }));
    }
}
