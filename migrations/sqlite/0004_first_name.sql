-- How a subscriber is greeted: "Hi Grace," from `first_name` when it is known. Like `name`,
-- it can never carry a line break into a header or a template.
ALTER TABLE subscribers ADD COLUMN first_name TEXT NOT NULL DEFAULT ''
    CHECK (instr(first_name, char(10)) = 0 AND instr(first_name, char(13)) = 0);
